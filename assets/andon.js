// The andon page's clientside callback (dashboard/pages/andon.py).
// Assigning a reason goes through the API like any other client: the signed-in
// browser's cookie plus a header no other site can send.
window.dash_clientside = Object.assign({}, window.dash_clientside, {
    loopline_andon: {
        // Buttons are ids.ANDON_ASSIGN parts, keyed "stop": "<line>:<stop id>".
        assign: async function (clicks, values, pickIds) {
            const cc = dash_clientside.callback_context;
            const trig = cc.triggered_id;
            // Buttons drawn afresh fire with n_clicks 0: only a real click assigns.
            if (!trig || !cc.triggered.some(t => t.value)) { return dash_clientside.no_update; }
            const at = pickIds.findIndex(p => p.stop === trig.stop);
            const code = at >= 0 ? values[at] : null;
            if (!code) { return {stop: trig.stop, status: "pick", at: Date.now()}; }
            const sep = trig.stop.lastIndexOf(":");
            const line = trig.stop.slice(0, sep), stop = trig.stop.slice(sep + 1);
            const url = `/api/v1/lines/${encodeURIComponent(line)}/stops/${encodeURIComponent(stop)}/reason`;
            try {
                const resp = await fetch(url, {
                    method: "POST", credentials: "same-origin",
                    headers: {"X-Requested-By": "loopline", "Content-Type": "application/json"},
                    body: JSON.stringify({code: code})});
                let body = null;
                try { body = await resp.json(); } catch (e) { body = {detail: resp.statusText}; }
                return {stop: trig.stop, status: resp.status, body: body, at: Date.now()};
            } catch (e) {
                return {stop: trig.stop, status: 0, body: {detail: String(e)}, at: Date.now()};
            }
        },
    },
});
