// When the viewer reconnects by itself, and how long it waits: pure functions, so the decision
// is tested on its own (reconnect.test.mjs, run by `node --test web/` in make test).
//
// Reconnect only when the end was not anyone's decision about this session:
//   1001 going away: the proxy is draining for a restart or an upgrade (another instance takes
//        the new connection), or the browser did not answer pings;
//   1006 abnormal:   the connection was lost without a close frame (network, proxy killed).
// Never after the user's own disconnect, a close the proxy or the VNC server chose (1000, 1008
// revoked or slow, 1011 VNC server unreachable, ...), an authentication or security failure, or
// the proxy's idle timeout (1001 "idle timeout": reconnecting would undo it). A 1006 before the
// socket ever opened is a refused upgrade (unknown token, not allowed) on a first connection, and
// is retried only once a session has been up, when it means the proxy is restarting.

/** Close codes after which the viewer tries again. */
export const RECONNECT_CODES = Object.freeze([1001, 1006]);

/** Attempts in a row before the viewer gives up (about 4 minutes with the delays below). */
export const MAX_ATTEMPTS = 10;

/**
 * Decides whether a session that just ended should be retried.
 * @param {object} end
 * @param {number} end.code           WebSocket close code (1006 when none was received)
 * @param {string} [end.reason]       close reason text
 * @param {boolean} end.opened        the WebSocket of this attempt had opened
 * @param {boolean} end.everConnected a session was up at some point since the page loaded
 * @param {boolean} end.userClosed    the user pressed Disconnect
 * @param {boolean} end.securityFailure the VNC server (or the proxy) refused authentication
 * @param {number} end.attempt        retries already made in a row (0 after a good session)
 * @returns {{reconnect: boolean, why: string}}
 */
export function shouldReconnect(end) {
    if (end.userClosed) {
        return { reconnect: false, why: 'closed by the user' };
    }
    if (end.securityFailure) {
        return { reconnect: false, why: 'authentication failed' };
    }
    if (!RECONNECT_CODES.includes(end.code)) {
        return { reconnect: false, why: 'closed on purpose (code ' + end.code + ')' };
    }
    if (end.code === 1001 && /idle/i.test(end.reason || '')) {
        return { reconnect: false, why: 'closed for being idle' };
    }
    if (end.code === 1006 && !end.opened && !end.everConnected) {
        return { reconnect: false, why: 'the proxy refused the connection' };
    }
    if (end.attempt >= MAX_ATTEMPTS) {
        return { reconnect: false, why: 'gave up after ' + end.attempt + ' attempts' };
    }
    return { reconnect: true, why: end.code === 1001 ? 'the proxy is going away' : 'the connection was lost' };
}

/**
 * Delay before retry number attempt (0-based): 2 s doubling to at most 30 s, stretched by up to
 * half at random so that thousands of viewers cut off by one restart do not all come back in
 * the same second.
 * @param {number} attempt
 * @param {() => number} [random] Math.random, or a fixed source in tests
 * @returns {number} milliseconds
 */
export function backoffMs(attempt, random = Math.random) {
    const base = Math.min(2000 * 2 ** Math.max(0, attempt), 30000);
    return Math.round(base * (1 + 0.5 * random()));
}
