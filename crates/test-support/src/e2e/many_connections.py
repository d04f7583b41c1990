# Opens COUNT connections to HOST:PORT and holds them all open at once;
# then sends SIZE bytes distinct to each connection, shuts down writing and
# expects the SHA-256 (hex, newline) of what it sent. Prints
# "elapsed=SECONDS" and exits 0 only if every connection got its hash.
#
# usage: many_connections.py HOST PORT COUNT SIZE
import asyncio
import hashlib
import sys
import time

HOST, PORT, COUNT, SIZE = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
LIMIT = 60


def payload(index):
    seed = hashlib.sha256(b"slipway connection %d" % index).digest()
    return (seed * (SIZE // len(seed) + 1))[:SIZE]


async def one(index, state):
    data = payload(index)
    try:
        reader, writer = await asyncio.open_connection(HOST, PORT)
    except OSError as e:
        state["failures"].append("%d: connect: %s" % (index, e))
        state["opened"] += 1
        if state["opened"] == COUNT:
            state["all_open"].set()
        return False
    try:
        state["opened"] += 1
        if state["opened"] == COUNT:
            state["all_open"].set()
        await state["all_open"].wait()
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        reply = await reader.read()
        want = hashlib.sha256(data).hexdigest()
        if reply.decode(errors="replace").strip() != want:
            state["failures"].append("%d: got %r" % (index, reply[:80]))
            return False
        return True
    except OSError as e:
        state["failures"].append("%d: %s" % (index, e))
        return False
    finally:
        writer.close()


async def main():
    state = {"opened": 0, "all_open": asyncio.Event(), "failures": []}
    started = time.monotonic()
    tasks = [one(i, state) for i in range(COUNT)]
    try:
        results = await asyncio.wait_for(asyncio.gather(*tasks), LIMIT)
    except asyncio.TimeoutError:
        print("timeout after %d s; opened %d" % (LIMIT, state["opened"]))
        return 1
    elapsed = time.monotonic() - started
    ok = sum(results)
    print("elapsed=%.3f" % elapsed)
    print("ok=%d of %d" % (ok, COUNT))
    for failure in state["failures"][:10]:
        print("failure:", failure)
    return 0 if ok == COUNT else 1


sys.exit(asyncio.run(main()))
