"""`faceswap ui`: a local web application over the library (FastAPI + server-sent events and a
small static front end in static/, served from the package: no CDN, works offline).

A client of the library like the CLI: the library never imports this package. Long jobs run as
`python -m faceswap ...` subprocesses (jobs.py), so every action is the same code as the CLI and
shows its equivalent command. See docs/ui.md.
"""
