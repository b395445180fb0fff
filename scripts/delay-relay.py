#!/usr/bin/env python3
"""A TCP relay that holds every byte for a fixed time in each direction.

scripts/rpc-latency-bench.sh runs it inside its network namespace, on the
namespace's end of the veth pair, where this kernel has no `tc netem`: a
client outside the namespace reaches the RPC server through it with a round
trip `2 * --delay-ms` longer. Order is kept, nothing is dropped, every
socket has TCP_NODELAY. It serves at most --max-connections connections and
exits after --max-seconds, whatever happens.
"""
import argparse
import asyncio
import socket
import time


async def pump(reader, writer, delay):
    """Copies reader to writer, each chunk written `delay` seconds after it arrived."""
    queue = asyncio.Queue()

    async def deliver():
        while True:
            due, chunk = await queue.get()
            if chunk is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)
            await writer.drain()
        writer.close()

    sender = asyncio.create_task(deliver())
    try:
        while True:
            chunk = await reader.read(1 << 20)
            if not chunk:
                break
            queue.put_nowait((time.monotonic() + delay, chunk))
    except (ConnectionError, OSError):
        pass
    queue.put_nowait((0, None))
    try:
        await sender
    except (ConnectionError, OSError):
        pass


def nodelay(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--listen", required=True, help="HOST:PORT")
    ap.add_argument("--to", required=True, help="HOST:PORT")
    ap.add_argument("--delay-ms", type=float, required=True, help="one-way delay")
    ap.add_argument("--max-connections", type=int, default=64)
    ap.add_argument("--max-seconds", type=float, default=7200)
    args = ap.parse_args()
    delay = args.delay_ms / 1000.0
    to_host, to_port = args.to.rsplit(":", 1)
    served = 0

    async def handle(c_reader, c_writer):
        nonlocal served
        served += 1
        if served > args.max_connections:
            c_writer.close()
            return
        try:
            s_reader, s_writer = await asyncio.open_connection(to_host, int(to_port))
        except OSError:
            c_writer.close()
            return
        nodelay(c_writer)
        nodelay(s_writer)
        await asyncio.gather(pump(c_reader, s_writer, delay), pump(s_reader, c_writer, delay))

    host, port = args.listen.rsplit(":", 1)
    server = await asyncio.start_server(handle, host, int(port))
    async with server:
        try:
            await asyncio.wait_for(server.serve_forever(), args.max_seconds)
        except asyncio.TimeoutError:
            pass


if __name__ == "__main__":
    asyncio.run(main())
