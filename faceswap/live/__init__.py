"""Live: swap the faces of a camera, a file played in real time, or a stream, at interactive
speed (session.py), with extract's tracker, a causal One-Euro smoother and convert's
compositing; every output carries a visible "synthetic" label by default."""
