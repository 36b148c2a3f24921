"""Serving snapshots over ADS.

`snapshot` holds *what* to serve (versioned resources, one cache per control
plane); `sotw` is *how* to speak State-of-the-World xDS on one stream (nonces,
ACK/NACK); `server` ties both to gRPC. The same ADS serves Envoy (listeners,
routes, clusters) and the ext_proc servers (routing tables).
"""
