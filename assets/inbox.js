// The follow-up inbox's clientside callback (dashboard/pages/inbox.py).
// Completing a task goes through the API like any other client: the signed-in browser's
// cookie plus a header no other site can send.
window.dash_clientside = Object.assign({}, window.dash_clientside, {
    loopline_inbox: {
        // A dict id as Dash writes it in the DOM: JSON with its keys sorted.
        _el: function (type, task) {
            return document.getElementById(JSON.stringify({task: task, type: type}));
        },
        complete: async function (clicks) {
            const cc = dash_clientside.callback_context;
            const trig = cc.triggered_id;
            // Buttons drawn afresh fire with n_clicks 0: only a real click completes.
            if (!trig || !cc.triggered.some(t => t.value)) { return dash_clientside.no_update; }
            const task = trig.task;
            const me = window.dash_clientside.loopline_inbox;
            const body = {};
            const score = me._el("task-score", task);
            if (score && score.value !== "") { body.score = Number(score.value); }
            const note = me._el("task-note", task);
            if (note && note.value.trim() !== "") { body.note = note.value.trim(); }
            const url = `/api/v1/tasks/${encodeURIComponent(task)}/complete`;
            try {
                const resp = await fetch(url, {
                    method: "POST", credentials: "same-origin",
                    headers: {"X-Requested-By": "loopline", "Content-Type": "application/json"},
                    body: JSON.stringify(body)});
                let answer = null;
                try { answer = await resp.json(); } catch (e) { answer = {detail: resp.statusText}; }
                return {task: task, status: resp.status, body: answer, at: Date.now()};
            } catch (e) {
                return {task: task, status: 0, body: {detail: String(e)}, at: Date.now()};
            }
        },
    },
});
