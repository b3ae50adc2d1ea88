/** The dashboard's stylesheet: system fonts, AA contrast, no framework. */
export const DASHBOARD_CSS = `
:root { color-scheme: light; --fg: #1b1f24; --muted: #4a5260; --bg: #ffffff; --line: #d0d7de; --accent: #0a58ca; --ok: #137333; --bad: #b3261e; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; gap: 2rem; align-items: center; padding: .75rem 1.5rem; border-bottom: 1px solid var(--line); }
header .brand { font-weight: 700; font-size: 1.2rem; color: var(--fg); text-decoration: none; }
nav a { margin-right: 1rem; color: var(--accent); }
main { padding: 1rem 1.5rem 3rem; max-width: 1200px; }
h1 { font-size: 1.35rem; } h2 { font-size: 1.1rem; margin-top: 1.5rem; }
table { border-collapse: collapse; width: 100%; margin-top: .5rem; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
td.url { max-width: 38rem; overflow-wrap: anywhere; }
label { margin-right: 1rem; }
textarea { width: 100%; font: 13px ui-monospace, monospace; }
fieldset { border: 1px solid var(--line); margin: .75rem 0; }
input, select, textarea, button { font: inherit; }
button { background: var(--accent); color: #fff; border: 0; border-radius: 4px; padding: .4rem .9rem; cursor: pointer; margin-right: .5rem; }
button:disabled { background: #8c959f; cursor: default; }
button:focus-visible, a:focus-visible, input:focus-visible, select:focus-visible, textarea:focus-visible { outline: 3px solid #ffbf47; outline-offset: 1px; }
progress { width: 100%; height: 1.1rem; }
.bar { display: inline-block; width: 8rem; height: .7rem; background: #eaeef2; border-radius: 3px; vertical-align: middle; }
.bar > span { display: block; height: 100%; background: var(--accent); border-radius: 3px; }
.summary { display: flex; flex-wrap: wrap; gap: 1.5rem; margin: .5rem 0; }
.actions { margin-top: .75rem; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 1rem; }
.charts h2 { grid-column: 1 / -1; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: .5rem; }
figcaption { color: var(--muted); margin-bottom: .25rem; }
.state-completed { color: var(--ok); } .state-cancelled, .state-rejected { color: var(--bad); }
.failed { color: var(--bad); }
.error { color: var(--bad); padding: 0 1.5rem; font-weight: 600; }
#auth { padding: 1.5rem; border-bottom: 1px solid var(--line); background: #f6f8fa; }
.hint { color: var(--muted); font-size: .9rem; }
.pager { margin-top: .5rem; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
svg text { font-size: 11px; fill: var(--fg); }
`;
