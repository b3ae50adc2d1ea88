# Peer: grequests-style, a gevent pool over requests. argv: base url, count, concurrency.
from gevent import monkey; monkey.patch_all()
import json, sys, time
import gevent.pool, requests

base, count, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
session = requests.Session()
adapter = requests.adapters.HTTPAdapter(pool_connections=concurrency, pool_maxsize=concurrency)
session.mount("http://", adapter)
ok = 0
def one(i):
    global ok
    res = session.get(f"{base}?i={i}")
    if res.status_code == 200:
        ok += 1
t0 = time.perf_counter()
pool = gevent.pool.Pool(concurrency)
pool.map(one, range(count))
print(json.dumps({"requests": count, "ok": ok, "seconds": time.perf_counter() - t0}))
