// Peer: Node's global fetch in a loop of `concurrency` workers. argv: base url, count, concurrency.
const [base, count, concurrency] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
let next = 0, ok = 0;
const t0 = performance.now();
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (next < count) {
    const i = next++;
    const res = await fetch(`${base}?i=${i}`);
    await res.arrayBuffer();
    if (res.status === 200) ok++;
  }
}));
console.log(JSON.stringify({ requests: count, ok, seconds: (performance.now() - t0) / 1000 }));
