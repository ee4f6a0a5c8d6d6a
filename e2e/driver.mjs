// Browser driver for vncedge's end-to-end tests. The Go tests (browser_test.go,
// browser_rfb_test.go) start the servers and hand this script a plan; the script runs each
// scenario and flow in headless Chromium with playwright-core and prints one JSON line per
// scenario or flow on stdout. It judges nothing: the Go tests assert.
//
// Usage: node driver.mjs PLAN.json
// Plan: {
//   chromium: "/usr/bin/chromium", userDataDir: DIR, artifacts: DIR,
//   scenarios: [{
//     name, url, app: "ours" | "novnc",
//     timeoutMs,                  // bound for each wait below
//     waitColour: {x, y, rgb: [r, g, b], tol}, // after connecting, wait until this pixel shows
//     minDistinct: N,             // or until the canvas shows at least N colours on a grid
//     samples: [[x, y], ...],     // canvas pixels to report
//     keys: "text",               // typed on the canvas after clicking it (also clicks when "")
//     clicks: N,                  // left clicks at the canvas centre
//     stopURL: URL,               // fetched once connected and done; then wait for the disconnect
//     screenshot: true
//   }]
// }
// Result line: {name, state, status, reason, elapsedMs, canvas: {w, h}, samples, distinct,
//   afterStop: {state, status, reason, elapsedMs}, screenshot, error, console}
//
// Flows (plan.flows, run after the scenarios) are for sessions that need several pages open at
// once, or the Go test's hand between two steps: plan.flows = [{name, timeoutMs, steps: [...]}],
// each step {id, do, page, ...} with do one of
//   open       {url, app}: a new page (named page) loads url and waits until the session settles;
//              a load that fails (e.g. a certificate Chromium does not trust) is reported as
//              loadError and ends nothing
//   pixels     {waitColour, minDistinct, samples, hash, stableMs, changedFrom}: wait until the
//              canvas shows waitColour, at least minDistinct colours, a SHA-256 over its pixels
//              other than the one step changedFrom reported, and no change for stableMs
//   input      {keys, clicks}: as in a scenario
//   hook       {url}: GET url (the Go test acts: changes the VM, reloads a certificate, checks
//              counters) and report its body; an error status ends the flow
//   state      the page's state now
//   secrets    {forbid}: where the string shows: page URL, DOM, input values, storage, cookies,
//              WebSocket URLs or frames
//   screenshot {file, delayMs}
//   close      the page closes (its WebSocket with it)
// Flow line: {name, flow: true, steps: [{id, do, page, ms, ...what it saw}], pages: {PAGE: {url,
//   websockets, wsURLs, recv, sent}}, error, console}. recv and sent hold the first frames of
//   the page's first WebSocket, hex, each cut at 256 bytes.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));

// Page-side probes. "settled" states end a wait; the two apps show state differently.
const probes = {
    ours: () => ({
        state: document.body.dataset.state || '',
        status: document.getElementById('status')?.textContent || '',
        reason: document.body.dataset.reason || '',
    }),
    // Debian's noVNC 1.3 app: classes on <html> and the #noVNC_status bar
    novnc: () => {
        const html = document.documentElement.classList;
        const st = document.getElementById('noVNC_status');
        const status = st?.textContent || '';
        let state = 'connecting';
        if (html.contains('noVNC_connected')) {
            state = 'connected';
        } else if (st?.classList.contains('noVNC_status_error')) {
            state = 'failed';
        } else if (status === 'Disconnected') {
            state = 'disconnected';
        } else if (!html.contains('noVNC_connecting') && !html.contains('noVNC_disconnecting') &&
                   !html.contains('noVNC_reconnecting') && status === '') {
            state = 'idle';
        }
        return { state, status, reason: state === 'failed' ? status : '' };
    },
};

function canvasProbe({ samples, grid }) {
    const canvases = [...document.querySelectorAll('canvas')];
    canvases.sort((a, b) => b.width * b.height - a.width * a.height);
    const c = canvases[0];
    if (!c || c.width === 0 || c.height === 0) {
        return { w: 0, h: 0, samples: [], distinct: 0 };
    }
    const ctx = c.getContext('2d');
    const px = (x, y) => Array.from(ctx.getImageData(x, y, 1, 1).data);
    const seen = new Set();
    for (let i = 0; i < grid; i++) {
        for (let j = 0; j < grid; j++) {
            const p = px(Math.floor((i + 0.5) * c.width / grid), Math.floor((j + 0.5) * c.height / grid));
            seen.add(p.join(','));
        }
    }
    return { w: c.width, h: c.height, samples: samples.map(([x, y]) => px(x, y)), distinct: seen.size };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitState(page, app, timeoutMs, accept) {
    const deadline = Date.now() + timeoutMs;
    let s;
    for (;;) {
        s = await page.evaluate(probes[app]);
        if (accept(s.state) || Date.now() > deadline) {
            return s;
        }
        await sleep(100);
    }
}

async function runScenario(context, sc) {
    const res = { name: sc.name, console: [] };
    const page = await context.newPage();
    page.on('console', (m) => {
        res.console.push(`${m.type()}: ${m.text()}`.slice(0, 300));
        if (res.console.length > 30) {
            res.console.shift();
        }
    });
    page.on('pageerror', (e) => res.console.push(`pageerror: ${e.message}`));
    const timeoutMs = sc.timeoutMs || 20000;
    const t0 = Date.now();
    try {
        await page.goto(sc.url, { timeout: timeoutMs });
        const settled = (st) => ['connected', 'failed', 'disconnected'].includes(st);
        Object.assign(res, await waitState(page, sc.app, timeoutMs, settled));
        res.elapsedMs = Date.now() - t0;

        if (res.state === 'connected') {
            const probeArgs = { samples: sc.samples || [], grid: 16 };
            const deadline = Date.now() + timeoutMs;
            for (;;) {
                const cv = await page.evaluate(canvasProbe, {
                    samples: [...probeArgs.samples, ...(sc.waitColour ? [[sc.waitColour.x, sc.waitColour.y]] : [])],
                    grid: probeArgs.grid,
                });
                res.canvas = { w: cv.w, h: cv.h };
                res.distinct = cv.distinct;
                res.samples = cv.samples.slice(0, probeArgs.samples.length);
                let done = cv.w > 0;
                if (sc.waitColour && cv.w > 0) {
                    const got = cv.samples[cv.samples.length - 1];
                    done = sc.waitColour.rgb.every((v, i) => Math.abs(v - got[i]) <= (sc.waitColour.tol ?? 8));
                }
                if (sc.minDistinct) {
                    done = done && cv.distinct >= sc.minDistinct;
                }
                if (done || Date.now() > deadline) {
                    res.pixelsSettled = done;
                    break;
                }
                await sleep(100);
            }

            if (sc.keys !== undefined || sc.clicks) {
                const box = await page.locator('canvas').first().boundingBox();
                const cx = box.x + box.width / 2;
                const cy = box.y + box.height / 2;
                await page.mouse.move(cx - 20, cy - 20);
                for (let i = 0; i < (sc.clicks || 1); i++) {
                    await page.mouse.click(cx + i, cy);
                }
                if (sc.keys) {
                    await page.keyboard.type(sc.keys, { delay: 10 });
                }
                res.actions = true;
            }
        }

        if (sc.screenshot) {
            res.screenshot = join(plan.artifacts, sc.name + '.png');
            await page.screenshot({ path: res.screenshot });
        }

        if (sc.stopURL && res.state === 'connected') {
            const r = await fetch(sc.stopURL);
            if (!r.ok) {
                throw new Error(`stop hook ${sc.stopURL}: HTTP ${r.status}`);
            }
            const t1 = Date.now();
            const after = await waitState(page, sc.app, timeoutMs, (st) => st !== 'connected' && st !== 'connecting');
            after.elapsedMs = Date.now() - t1;
            res.afterStop = after;
            if (sc.screenshot) {
                res.screenshotAfterStop = join(plan.artifacts, sc.name + '-after-stop.png');
                await page.screenshot({ path: res.screenshotAfterStop });
            }
        }
    } catch (e) {
        res.error = String(e && e.stack || e);
    } finally {
        await page.close().catch(() => {});
    }
    return res;
}

// Flows. A page's canvas probe here also hashes the pixels, so two sessions can be compared
// exactly (a recording and its replay).
async function canvasHashProbe({ samples, grid, hash }) {
    const canvases = [...document.querySelectorAll('canvas')];
    canvases.sort((a, b) => b.width * b.height - a.width * a.height);
    const c = canvases[0];
    if (!c || c.width === 0 || c.height === 0) {
        return { w: 0, h: 0, samples: [], distinct: 0, hash: '' };
    }
    const ctx = c.getContext('2d');
    const all = ctx.getImageData(0, 0, c.width, c.height).data;
    const px = (x, y) => {
        const i = (y * c.width + x) * 4;
        return [all[i], all[i + 1], all[i + 2], all[i + 3]];
    };
    const seen = new Set();
    for (let i = 0; i < grid; i++) {
        for (let j = 0; j < grid; j++) {
            seen.add(px(Math.floor((i + 0.5) * c.width / grid), Math.floor((j + 0.5) * c.height / grid)).join(','));
        }
    }
    let digest = '';
    if (hash) {
        const d = new Uint8Array(await crypto.subtle.digest('SHA-256', all));
        digest = Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
    }
    return { w: c.width, h: c.height, samples: samples.map(([x, y]) => px(x, y)), distinct: seen.size, hash: digest };
}

function secretsProbe(secret) {
    const found = [];
    if (location.href.includes(secret)) {
        found.push('url');
    }
    if (document.documentElement.outerHTML.includes(secret)) {
        found.push('dom');
    }
    for (const el of document.querySelectorAll('input, textarea')) {
        if ((el.value || '').includes(secret)) {
            found.push('input#' + (el.id || el.name || '?'));
        }
    }
    for (const [name, store] of [['localStorage', localStorage], ['sessionStorage', sessionStorage]]) {
        for (let i = 0; i < store.length; i++) {
            const k = store.key(i);
            if (k.includes(secret) || (store.getItem(k) || '').includes(secret)) {
                found.push(name + ':' + k);
            }
        }
    }
    if (document.cookie.includes(secret)) {
        found.push('cookie');
    }
    return found;
}

const frameHex = (payload) => {
    const b = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, 'utf8');
    return b.subarray(0, 256).toString('hex');
};

async function runFlow(context, fl) {
    const res = { name: fl.name, flow: true, steps: [], pages: {}, console: [] };
    const pages = {};
    const timeoutMs = fl.timeoutMs || 20000;
    const byId = {};
    const log = (name, line) => {
        res.console.push(`${name}: ${line}`.slice(0, 300));
        if (res.console.length > 40) {
            res.console.shift();
        }
    };
    const pageOf = (st) => {
        const p = pages[st.page];
        if (!p) {
            throw new Error(`step ${st.id || st.do}: no open page ${st.page}`);
        }
        return p;
    };
    const runners = {
        async open(st, out) {
            const info = { url: st.url, websockets: 0, wsURLs: [], recv: [], sent: [] };
            res.pages[st.page] = info;
            const page = await context.newPage();
            pages[st.page] = { page, app: st.app };
            page.on('console', (m) => log(st.page, `${m.type()}: ${m.text()}`));
            page.on('pageerror', (e) => log(st.page, `pageerror: ${e.message}`));
            page.on('websocket', (ws) => {
                info.websockets++;
                info.wsURLs.push(ws.url());
                if (info.websockets > 1) {
                    return;
                }
                const keep = (list) => (f) => {
                    if (list.length < 8) {
                        list.push(frameHex(f.payload));
                    }
                };
                ws.on('framereceived', keep(info.recv));
                ws.on('framesent', keep(info.sent));
            });
            const t0 = Date.now();
            try {
                await page.goto(st.url, { timeout: timeoutMs });
            } catch (e) {
                out.loadError = String(e && e.message || e).split('\n')[0];
                return;
            }
            const settled = (s) => ['connected', 'failed', 'disconnected'].includes(s);
            Object.assign(out, await waitState(page, st.app, timeoutMs, settled));
            out.elapsedMs = Date.now() - t0;
        },
        async pixels(st, out) {
            const { page, app } = pageOf(st);
            const samples = st.samples || [];
            const wc = st.waitColour;
            const probeSamples = [...samples, ...(wc ? [[wc.x, wc.y]] : [])];
            const hash = !!(st.hash || st.stableMs || st.changedFrom);
            const other = st.changedFrom ? (byId[st.changedFrom] || {}).hash : undefined;
            const deadline = Date.now() + timeoutMs;
            let lastHash = null;
            let since = Date.now();
            for (;;) {
                // A session that ended shows no more pixels: say so now rather than at the deadline.
                const now = await page.evaluate(probes[app]);
                if (now.state === 'failed' || now.state === 'disconnected') {
                    Object.assign(out, now, { settled: false });
                    return;
                }
                const cv = await page.evaluate(canvasHashProbe, { samples: probeSamples, grid: 16, hash });
                out.canvas = { w: cv.w, h: cv.h };
                out.distinct = cv.distinct;
                out.samples = cv.samples.slice(0, samples.length);
                out.hash = cv.hash;
                let done = cv.w > 0;
                if (wc && cv.w > 0) {
                    const got = cv.samples[cv.samples.length - 1];
                    done = wc.rgb.every((v, i) => Math.abs(v - got[i]) <= (wc.tol ?? 8));
                }
                if (st.minDistinct) {
                    done = done && cv.distinct >= st.minDistinct;
                }
                if (st.changedFrom) {
                    done = done && !!other && cv.hash !== other;
                }
                if (cv.hash !== lastHash) {
                    lastHash = cv.hash;
                    since = Date.now();
                }
                if (st.stableMs) {
                    done = done && Date.now() - since >= st.stableMs;
                }
                if (done || Date.now() > deadline) {
                    out.settled = done;
                    return;
                }
                await sleep(100);
            }
        },
        async input(st, out) {
            const { page, app } = pageOf(st);
            const now = await page.evaluate(probes[app]);
            if (now.state !== 'connected') {
                throw new Error(`input: the session is ${now.state} (${now.status}), not connected`);
            }
            const box = await page.locator('canvas').first().boundingBox({ timeout: timeoutMs });
            const cx = box.x + box.width / 2;
            const cy = box.y + box.height / 2;
            await page.mouse.move(cx - 20, cy - 20);
            for (let i = 0; i < (st.clicks || 1); i++) {
                await page.mouse.click(cx + i, cy);
            }
            if (st.keys) {
                await page.keyboard.type(st.keys, { delay: 10 });
            }
            out.actions = true;
        },
        async hook(st, out) {
            const r = await fetch(st.url, { signal: AbortSignal.timeout(timeoutMs) });
            out.body = (await r.text()).slice(0, 2000);
            if (!r.ok) {
                throw new Error(`hook ${st.url}: HTTP ${r.status}: ${out.body}`);
            }
        },
        async state(st, out) {
            const { page, app } = pageOf(st);
            Object.assign(out, await page.evaluate(probes[app]));
        },
        async secrets(st, out) {
            const { page } = pageOf(st);
            const found = await page.evaluate(secretsProbe, st.forbid);
            const info = res.pages[st.page];
            const hex = Buffer.from(st.forbid, 'utf8').toString('hex');
            if (info.wsURLs.some((u) => u.includes(st.forbid))) {
                found.push('websocket-url');
            }
            if ([...info.recv, ...info.sent].some((f) => f.includes(hex))) {
                found.push('websocket-frames');
            }
            out.found = found;
        },
        async screenshot(st, out) {
            const { page } = pageOf(st);
            if (st.delayMs) {
                await sleep(st.delayMs); // let a sliding status bar come to rest
            }
            out.screenshot = join(plan.artifacts, st.file + '.png');
            await page.screenshot({ path: out.screenshot });
        },
        async close(st) {
            const { page } = pageOf(st);
            delete pages[st.page];
            await page.close();
        },
    };
    try {
        for (const st of fl.steps) {
            const out = { id: st.id || '', do: st.do, page: st.page || '' };
            res.steps.push(out);
            if (st.id) {
                byId[st.id] = out;
            }
            const run = runners[st.do];
            if (!run) {
                throw new Error(`unknown step ${st.do}`);
            }
            const t0 = Date.now();
            try {
                await run(st, out);
            } catch (e) {
                out.error = String(e && e.message || e);
                throw e;
            } finally {
                out.ms = Date.now() - t0;
            }
        }
    } catch (e) {
        res.error = String(e && e.stack || e);
    } finally {
        for (const { page } of Object.values(pages)) {
            await page.close().catch(() => {});
        }
    }
    return res;
}

const context = await chromium.launchPersistentContext(plan.userDataDir, {
    executablePath: plan.chromium,
    headless: true,
    args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        ...(plan.chromiumArgs || []),
    ],
    viewport: { width: 1280, height: 900 },
    timeout: 60000,
});
try {
    for (const sc of plan.scenarios || []) {
        const res = await runScenario(context, sc);
        process.stdout.write(JSON.stringify(res) + '\n');
    }
    for (const fl of plan.flows || []) {
        const res = await runFlow(context, fl);
        process.stdout.write(JSON.stringify(res) + '\n');
    }
} finally {
    await context.close();
}
