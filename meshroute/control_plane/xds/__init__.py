"""Serving snapshots over ADS.

`snapshot` holds *what* to serve (versioned resources, one cache per control
plane); `sotw` and `delta` are *how* to speak State-of-the-World and Incremental
xDS on one stream (nonces, ACK/NACK, subscriptions); `server` ties them to gRPC.
The same ADS serves Envoy (listeners, routes, clusters, secrets) and the ext_proc
servers (routing tables); which protocol an Envoy uses is its bootstrap's choice.
"""
