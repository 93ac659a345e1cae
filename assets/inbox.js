// The inbox's clientside callbacks (dashboard/pages/inbox.py): follow-up tasks and
// notifications.
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
        // A notification marked read, its alert acknowledged (then the entry read), or
        // every entry read: through the API, the answer to the page's message callback.
        note: async function (reads, acks, all) {
            const cc = dash_clientside.callback_context;
            const trig = cc.triggered_id;
            if (!trig || !cc.triggered.some(t => t.value)) { return dash_clientside.no_update; }
            const post = async (url) => {
                const resp = await fetch(url, {
                    method: "POST", credentials: "same-origin",
                    headers: {"X-Requested-By": "loopline", "Content-Type": "application/json"},
                    body: "{}"});
                let answer = null;
                try { answer = await resp.json(); } catch (e) { answer = {detail: resp.statusText}; }
                return {status: resp.status, body: answer};
            };
            try {
                if (trig === "inbox-read-all") {
                    const r = await post("/api/v1/notifications/read-all");
                    return {action: "read", ...r, at: Date.now()};
                }
                if (trig.type === "note-ack") {
                    const [note, alert] = String(trig.note).split(":");
                    const r = await post(`/api/v1/alerts/${encodeURIComponent(alert)}/ack`);
                    if (r.status >= 200 && r.status < 300) {
                        await post(`/api/v1/notifications/${encodeURIComponent(note)}/read`);
                    }
                    return {action: "ack", alert: alert, note: note, ...r, at: Date.now()};
                }
                const note = String(trig.note);
                const r = await post(`/api/v1/notifications/${encodeURIComponent(note)}/read`);
                return {action: "read", note: note, ...r, at: Date.now()};
            } catch (e) {
                return {action: "read", status: 0, body: {detail: String(e)}, at: Date.now()};
            }
        },
    },
});
