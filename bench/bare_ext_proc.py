"""The least any Python ext_proc server that routes on the request body must do.

It answers Envoy's request-headers message with "continue" and the buffered body
with one header for the route and a route-cache clear, then ends the stream: the
two messages each way that meshroute's sidecar exchanges on the alias and embedded
paths, with nothing decided. It runs on grpc's aio server and the event loop the
sidecar uses (meshroute.ext_proc.service.event_loop_runner), so the bench's
"ext_proc floor" row is what Envoy plus a Python ext_proc cost on this machine
before any of meshroute's own work; the distance from it to the ext_proc paths is
ours to shrink, the distance from it to direct is not.

    .venv/bin/python -m bench.bare_ext_proc --port PORT
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Sequence

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc

from meshroute.ext_proc.responses import CONTINUE_HEADERS, header
from meshroute.ext_proc.service import event_loop_runner
from meshroute.lifecycle import wait_for_stop_signal

ROUTE_HEADER = "x-bench-route"
"""The header the floor server sets; the floor Envoy routes only requests that carry it."""

ROUTED_BODY = ep.ProcessingResponse(
    request_body=ep.BodyResponse(
        response=ep.CommonResponse(
            header_mutation=ep.HeaderMutation(set_headers=[header(ROUTE_HEADER, "upstream")]),
            clear_route_cache=True,
        )
    )
)


class BareProcessor(ep_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    async def Process(
        self, requests: AsyncIterator[ep.ProcessingRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ep.ProcessingResponse]:
        async for request in requests:
            if request.HasField("request_headers"):
                yield CONTINUE_HEADERS
            else:
                yield ROUTED_BODY
                return  # nothing more is needed: end the stream, as the sidecar does


async def serve(port: int) -> None:
    server = grpc.aio.server()
    ep_grpc.add_ExternalProcessorServicer_to_server(BareProcessor(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        await wait_for_stop_signal()
    finally:
        await server.stop(grace=1)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    event_loop_runner()(serve(args.port))


if __name__ == "__main__":
    main()
