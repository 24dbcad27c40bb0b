"""The SteVe stand-in: a small HTTP server that speaks SteVe's REST API subset.

It answers exactly as SteVe 3.12+ does (auth, error bodies, timestamps, filters,
ordering; see ``/work/shared/steve/CONTRACT.md``) over a simulated, seeded fleet of
charge points, and adds an unauthenticated control API under ``/_standin`` for
tests and the demo (it answers only requests to a loopback host name, and takes
JSON only, so a web page open in a browser cannot drive it). It serves the demo
and every test suite over real HTTP; it is never a mock inside a test process.

Run it with ``python -m sync.standin`` or ``manage.py steve_standin``; start it
from tests with ``sync.standin.testing.StandinProcess``. Layout:

- ``timestamps``: SteVe's timestamp format and Joda's ISO parser.
- ``records``, ``store``: SteVe's database rows and its repository queries.
- ``stations``, ``history``: the simulated charge points and the seeded history.
- ``simulation``: what stations answer and send; ``snapshot`` renders it.
- ``fleet``: the thread-safe facade (REST reads, OCPP pre-checks, time).
- ``binding``, ``operations``, ``api``: SteVe's REST API semantics.
- ``server``, ``control``, ``faults``: HTTP, the control API, fault injection.
- ``testing``: ``StandinProcess`` for test suites.
"""
