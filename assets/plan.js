// The plan page's clientside callbacks (dashboard/pages/plan.py).
// Deciding on a change goes through the API like any other client: the signed-in
// browser's cookie plus a header no other site can send.
window.dash_clientside = Object.assign({}, window.dash_clientside, {
    loopline_plan: {
        // "change-approve" is ids.CHANGE_APPROVE.
        decide: async function (approveClicks, rejectClicks) {
            const cc = dash_clientside.callback_context;
            const trig = cc.triggered_id;
            // Buttons drawn afresh fire with n_clicks 0: only a real click decides.
            if (!trig || !cc.triggered.some(t => t.value)) { return dash_clientside.no_update; }
            const action = trig.type === "change-approve" ? "approve" : "reject";
            const url = `/api/v1/changes/${encodeURIComponent(trig.change)}/${action}`;
            try {
                const resp = await fetch(url, {
                    method: "POST", credentials: "same-origin",
                    headers: {"X-Requested-By": "loopline"}});
                let body = null;
                try { body = await resp.json(); } catch (e) { body = {detail: resp.statusText}; }
                return {change: trig.change, action: action, status: resp.status, body: body,
                        at: Date.now()};
            } catch (e) {
                return {change: trig.change, action: action, status: 0, body: {detail: String(e)},
                        at: Date.now()};
            }
        },
    },
});
