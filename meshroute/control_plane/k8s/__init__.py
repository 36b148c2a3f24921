"""The control plane's Kubernetes side: config as custom resources.

The config models in `meshroute.control_plane.config` are the one source of truth for
what an Agent, LLMProvider or Gateway may say; this package makes them cluster
objects and reads them back:

- `crds`: the CustomResourceDefinitions, structural schemas derived from the models.
- `api`: authentication and the few API calls used (list, watch, status patch).
- `informer`: one kind's objects, kept current by list-then-watch.
- `acceptance`: which objects to serve when some are wrong, and why each is refused.
- `feed`: all of it together, feeding the snapshot cache and writing `.status`.
"""
