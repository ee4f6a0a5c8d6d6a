// node --test web/   (make test runs it)
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { MAX_ATTEMPTS, RECONNECT_CODES, backoffMs, shouldReconnect } from './reconnect.js';

// A session that was up and then ended with code, no one's choice.
const ended = (code, more = {}) => ({
    code, reason: '', opened: true, everConnected: true, userClosed: false, securityFailure: false, attempt: 0, ...more,
});

test('reconnects after 1001 and 1006 only', () => {
    assert.deepEqual(RECONNECT_CODES, [1001, 1006]);
    for (let code = 1000; code <= 1015; code++) {
        assert.equal(shouldReconnect(ended(code)).reconnect, code === 1001 || code === 1006, 'code ' + code);
    }
    assert.equal(shouldReconnect(ended(1001, { reason: 'server shutting down' })).reconnect, true);
    assert.equal(shouldReconnect(ended(1001, { reason: 'no pong from the browser' })).reconnect, true);
});

test('never after a deliberate close', () => {
    assert.equal(shouldReconnect(ended(1000)).reconnect, false); // the VNC server closed, or the user
    assert.equal(shouldReconnect(ended(1006, { userClosed: true })).reconnect, false);
    assert.equal(shouldReconnect(ended(1001, { userClosed: true })).reconnect, false);
    assert.equal(shouldReconnect(ended(1001, { reason: 'idle timeout' })).reconnect, false);
    assert.equal(shouldReconnect(ended(1008, { reason: 'access revoked' })).reconnect, false);
    assert.equal(shouldReconnect(ended(1011, { reason: 'VNC server unreachable: connection refused' })).reconnect, false);
});

test('never after an authentication or security failure', () => {
    assert.equal(shouldReconnect(ended(1006, { securityFailure: true })).reconnect, false);
    assert.equal(shouldReconnect(ended(1001, { securityFailure: true })).reconnect, false);
});

test('a refused first connection is not retried, a refused reconnect is', () => {
    // 403/404 before the upgrade: the browser only sees 1006 before open.
    assert.equal(shouldReconnect(ended(1006, { opened: false, everConnected: false })).reconnect, false);
    // After a session was up, the proxy may be restarting: keep trying.
    assert.equal(shouldReconnect(ended(1006, { opened: false, everConnected: true, attempt: 3 })).reconnect, true);
});

test('gives up after MAX_ATTEMPTS in a row', () => {
    assert.equal(shouldReconnect(ended(1006, { attempt: MAX_ATTEMPTS - 1 })).reconnect, true);
    const r = shouldReconnect(ended(1006, { attempt: MAX_ATTEMPTS }));
    assert.equal(r.reconnect, false);
    assert.match(r.why, /gave up/);
});

test('backoff doubles from 2 s to at most 30 s, with up to 50% jitter', () => {
    assert.deepEqual([0, 1, 2, 3, 4, 5, 9].map((a) => backoffMs(a, () => 0)), [2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    assert.equal(backoffMs(0, () => 1), 3000);
    assert.equal(backoffMs(6, () => 1), 45000);
    for (let i = 0; i < 100; i++) {
        const d = backoffMs(1);
        assert.ok(d >= 4000 && d <= 6000, String(d));
    }
});
