"""The Sessions API (`/api/v1/`), for integrators: `app.api` is what polaris/urls.py
mounts.

Every answer is an envelope: `{"ok": true, "message": ..., "result": ...}`, or
`{"ok": false, "message": ...}` with the status that fits (400 malformed, 401 no or
bad credentials, 403 a write the caller may not make: a browser session's without
its CSRF token, or staff starting or stopping another user's session without the
permission `sessions_app.manage_any_session`, 404 not yours or unknown, 409 state
conflict, 413 body too large, 422 invalid, 502 SteVe or the station failed). Errors
raised before or around the endpoints (an unknown path, a method a path does not
take) get the same envelope from `middleware`. The OpenAPI document is at
`/api/v1/openapi.json`, browsable docs at `/api/v1/docs`; each operation in it
lists the statuses it can answer, no more.

`app` holds the NinjaAPI object and its error handlers, `routes` the operations,
`auth` the bearer tokens and browser session, `schemas` what the operations read
and answer, and `selectors` their reads.
"""
