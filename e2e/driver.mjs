// Browser driver for vncedge's end-to-end test. The Go test (e2e_test.go) starts the servers and
// hands this script a plan; the script runs each scenario in headless Chromium with playwright-core
// and prints one JSON line per scenario on stdout. It judges nothing: the Go test asserts.
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

const context = await chromium.launchPersistentContext(plan.userDataDir, {
    executablePath: plan.chromium,
    headless: true,
    args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 1280, height: 900 },
    timeout: 60000,
});
try {
    for (const sc of plan.scenarios) {
        const res = await runScenario(context, sc);
        process.stdout.write(JSON.stringify(res) + '\n');
    }
} finally {
    await context.close();
}
