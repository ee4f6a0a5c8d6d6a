// vncedge's viewer: one RFB session from noVNC's core, configured from the page URL the way
// noVNC's own vnc.html reads it, with a status line that says why a session ended.
//
// URL parameters (query string or #fragment; the fragment wins and never reaches the server, so
// prefer it for the password):
//   path        WebSocket path on this host, e.g. vnc/192.168.100.3 or websockify?token=vm1
//               (default websockify)
//   host, port  another WebSocket host or port (default: the page's)
//   encrypt     1 for wss, 0 for ws (default: wss on https pages)
//   password    VNC password; asked for on the page when the server wants one and none is given
//   username    for VNC servers that ask for one (VeNCrypt Plain)
//   autoconnect 0 shows a Connect button instead of connecting at once (default 1)
//   scale       1 scales the remote screen to the window (default 1)
//   resize      noVNC's spelling: scale | remote (ask the server to match the window) | off
//   view_only   1 sends no keys or pointer events
//   shared      0 asks the server to disconnect other viewers (default 1)
//   logging     noVNC core log level: error | warn | info | debug
//   reconnect   0 never reconnects by itself (default 1: after 1001 or a lost connection, with
//               backoff; reconnect.js says exactly when)
//
// For tests and scripts: <body data-state> is idle, connecting, connected, reconnecting,
// disconnected or failed; <body data-reason> and window.vncedgeViewer.reason hold the last reason;
// window.vncedgeViewer.reconnect holds {attempt, atMs} while a reconnect is pending; window.rfb is
// the session.
import RFB from './core/rfb.js';
import { initLogging } from './core/util/logging.js';
import { backoffMs, shouldReconnect } from './reconnect.js';

const params = readParams();
const $ = (id) => document.getElementById(id);
const viewer = { url: '', reason: '', close: null, desktopName: '', reconnect: null };
window.vncedgeViewer = viewer;

function readParams() {
    const p = new URLSearchParams(location.search);
    const hash = new URLSearchParams(location.hash.slice(1));
    for (const [k, v] of hash) {
        p.set(k, v);
    }
    return p;
}

function flag(name, def) {
    const v = params.get(name);
    if (v === null || v === '') {
        return def;
    }
    return !['0', 'false', 'no', 'off'].includes(v.toLowerCase());
}

function wsURL() {
    const encrypt = flag('encrypt', location.protocol === 'https:');
    let host = params.get('host') || location.hostname;
    if (host.includes(':') && !host.startsWith('[')) {
        host = '[' + host + ']'; // IPv6 literal
    }
    const port = params.get('port') || location.port;
    let path = params.get('path') ?? 'websockify';
    if (!path.startsWith('/')) {
        path = '/' + path;
    }
    return (encrypt ? 'wss' : 'ws') + '://' + host + (port ? ':' + port : '') + path;
}

function setState(state, text) {
    document.body.dataset.state = state;
    $('status').textContent = text;
    const live = state === 'connecting' || state === 'connected';
    $('connect').textContent = state === 'reconnecting' ? 'Cancel' : live ? 'Disconnect' : 'Connect';
    $('cad').disabled = state !== 'connected';
    if (state !== 'connecting') {
        $('credentials').classList.remove('visible');
    }
}

function setReason(reason) {
    viewer.reason = reason;
    document.body.dataset.reason = reason;
}

// describeClose turns the WebSocket close into words. A browser is never told the HTTP status of
// a refused upgrade: a 403 for an unknown token looks like code 1006 before the socket opened.
function describeClose(c, opened) {
    if (!c) {
        return '';
    }
    if (c.code === 1006 && !opened) {
        return 'the proxy refused the WebSocket connection (unknown token, target not allowed, ' +
            'or proxy unreachable; code 1006)';
    }
    if (c.code === 1006) {
        return 'the connection was lost without a close frame (code 1006)';
    }
    const why = c.reason || ({
        1000: 'closed normally', 1001: 'the proxy is going away', 1002: 'protocol error',
        1003: 'unsupported data', 1008: 'policy violation', 1009: 'message too big',
        1011: 'server error', 1013: 'try again later',
    })[c.code] || 'closed';
    return why + ' (code ' + c.code + ')';
}

let rfb = null;
let userDisconnect = false;
let credentials = {};
// Reconnecting: retries made in a row, whether a session was ever up on this page, and the
// pending timers (the retry itself and the once-a-second countdown on screen).
let attempt = 0;
let everConnected = false;
let retryTimer = null;
let countdownTimer = null;

function cancelReconnect() {
    clearTimeout(retryTimer);
    clearInterval(countdownTimer);
    retryTimer = countdownTimer = null;
    viewer.reconnect = null;
}

// scheduleReconnect says on screen why the session ended and when the next try is, counting
// down, and connects again when the time is up.
function scheduleReconnect(reason) {
    const delay = backoffMs(attempt);
    const at = Date.now() + delay;
    attempt++;
    viewer.reconnect = { attempt, atMs: at };
    const show = () => {
        const s = Math.max(1, Math.ceil((at - Date.now()) / 1000));
        setState('reconnecting', 'Disconnected: ' + reason + '; reconnecting in ' + s + ' s\u2026' +
            (attempt > 1 ? ' (attempt ' + attempt + ')' : ''));
    };
    show();
    countdownTimer = setInterval(show, 1000);
    retryTimer = setTimeout(() => {
        cancelReconnect();
        connect({ retry: true });
    }, delay);
}

function connect({ retry = false } = {}) {
    cancelReconnect();
    if (!retry) {
        attempt = 0;
    }
    userDisconnect = false;
    setReason('');
    viewer.close = null;
    viewer.url = wsURL();
    setState('connecting', 'Connecting to ' + viewer.url.replace(/([?&]token=)[^&]*/, '$1…'));

    // The page opens the WebSocket itself (RFB accepts one) to learn the close code and reason,
    // which the RFB disconnect event does not carry. No subprotocol, like noVNC >= 1.2.
    const sock = new WebSocket(viewer.url);
    let opened = false;
    let securityReason = '';
    sock.addEventListener('open', () => { opened = true; });
    sock.addEventListener('close', (e) => {
        viewer.close = { code: e.code, reason: e.reason, wasClean: e.wasClean };
    });

    credentials = {};
    if (params.get('password') !== null) {
        credentials.password = params.get('password');
    }
    if (params.get('username') !== null) {
        credentials.username = params.get('username');
    }
    rfb = new RFB($('screen'), sock, { credentials, shared: flag('shared', true) });
    window.rfb = rfb;
    const resize = params.get('resize') || (flag('scale', true) ? 'scale' : 'off');
    rfb.scaleViewport = resize === 'scale';
    rfb.resizeSession = resize === 'remote';
    rfb.viewOnly = flag('view_only', false);

    rfb.addEventListener('connect', () => {
        attempt = 0;
        everConnected = true;
        setState('connected', 'Connected' + (viewer.desktopName ? ' to ' + viewer.desktopName : ''));
        rfb.focus();
    });
    rfb.addEventListener('desktopname', (e) => {
        viewer.desktopName = e.detail.name;
        document.title = e.detail.name + ' - vncedge';
        if (document.body.dataset.state === 'connected') {
            setState('connected', 'Connected to ' + viewer.desktopName);
        }
    });
    rfb.addEventListener('credentialsrequired', (e) => {
        const types = e.detail.types || ['password'];
        if (types.includes('username') && !credentials.username) {
            credentials.username = window.prompt('Username') || '';
        }
        $('status').textContent = 'The VNC server asks for a password';
        $('credentials').classList.add('visible');
        $('password').focus();
    });
    rfb.addEventListener('securityfailure', (e) => {
        // vncedge explains its refusals here (an unknown link, a VM that is
        // down or refused the proxy): show the reason as it is.
        securityReason = e.detail.reason || 'authentication failed';
    });
    rfb.addEventListener('disconnect', (e) => {
        const wasConnected = document.body.dataset.state === 'connected';
        let reason = securityReason || describeClose(viewer.close, opened);
        if (userDisconnect) {
            reason = 'disconnected by you';
        }
        if (!reason) {
            reason = wasConnected ? 'the connection was closed' : 'the connection failed (see the browser console)';
        }
        setReason(reason);
        rfb = null;
        const c = viewer.close || { code: 1006, reason: '' };
        const decision = shouldReconnect({
            code: c.code, reason: c.reason, opened, everConnected,
            userClosed: userDisconnect, securityFailure: securityReason !== '', attempt,
        });
        if (decision.reconnect && flag('reconnect', true)) {
            scheduleReconnect(reason);
            return;
        }
        if (e.detail.clean && !securityReason) {
            setState('disconnected', 'Disconnected: ' + reason);
        } else {
            setState('failed', (wasConnected ? 'Disconnected: ' : 'Failed: ') + reason);
        }
    });
}

$('credentials').addEventListener('submit', (e) => {
    e.preventDefault();
    if (rfb) {
        credentials.password = $('password').value;
        rfb.sendCredentials(credentials);
        $('credentials').classList.remove('visible');
        $('status').textContent = 'Password sent';
    }
});

$('cad').addEventListener('click', () => rfb && rfb.sendCtrlAltDel());

$('connect').addEventListener('click', () => {
    if (rfb) {
        userDisconnect = true;
        rfb.disconnect();
    } else if (viewer.reconnect) {
        cancelReconnect();
        setState('disconnected', 'Disconnected: ' + viewer.reason + ' (reconnect cancelled)');
    } else {
        connect();
    }
});

initLogging(params.get('logging') || 'warn');
if (flag('autoconnect', true)) {
    connect();
} else {
    setState('idle', 'Not connected: press Connect');
}
