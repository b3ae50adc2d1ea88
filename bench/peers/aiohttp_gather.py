# Peer: the usual Python script, asyncio.gather over an aiohttp session with a semaphore.
# argv: base url, count, concurrency.
import asyncio, json, sys, time
import aiohttp

async def main(base, count, concurrency):
    sem = asyncio.Semaphore(concurrency)
    ok = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def one(i):
            nonlocal ok
            async with sem:
                async with session.get(f"{base}?i={i}") as res:
                    await res.read()
                    if res.status == 200:
                        ok += 1
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        print(json.dumps({"requests": count, "ok": ok, "seconds": time.perf_counter() - t0}))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
