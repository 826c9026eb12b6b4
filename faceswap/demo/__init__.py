"""The demo: sample clips of two faces made offline from the astronaut portrait (faces.py)."""
