// The one module that talks to the API: the pattern a browser client copies.
//
// - The tokens travel in HttpOnly cookies (`credentials: "include"`); this code never sees them.
// - Unsafe requests of a signed-in browser carry `X-CSRF-Token`. Every sign-in and refresh
//   answers with the token; it is kept in memory only, so after a reload GET /auth/csrf (which
//   the session's cookies authorise) gives it back.
// - A 401 on a signed-in request means the access token expired: one POST /auth/refresh, then
//   the request once more. A second 401 means the session is over: sign in again.

import { API_URL } from "./config.js";
import * as webauthn from "./webauthn.js";

const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);
// The codes of a missing or expired access token; other 401s (a revoked session, a wrong
// second-step code) would not be cured by a refresh.
const EXPIRED = new Set(["not_authenticated", "invalid_token"]);

export class ApiError extends Error {
  constructor(status, body) {
    // FastAPI's 422 is a list of problems; the first one is enough for a person.
    const problem = Array.isArray(body?.detail) ? body.detail[0] : null;
    super(problem?.msg ?? body?.detail ?? `The service answered ${status}`);
    this.status = status;
    this.code = body?.code ?? (problem ? "validation_error" : `http_${status}`);
    this.field = problem?.loc?.at(-1); // the form field to point at, when there is one
  }
}

let csrfToken = null;
let restoring = null; // the pending GET /auth/csrf, shared by concurrent requests
let refreshing = null; // the pending POST /auth/refresh, likewise

async function send(method, path, body, csrf) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (csrf) headers["X-CSRF-Token"] = csrf;
  let response;
  try {
    response = await fetch(`${API_URL}/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "include",
    });
  } catch {
    throw new ApiError(0, {
      detail: "The service cannot be reached; check your connection and try again.",
      code: "network_error",
    });
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  if (data?.csrf_token) csrfToken = data.csrf_token; // sign-in, refresh and /auth/csrf
  return data;
}

function restoreCsrf() {
  restoring ??= send("GET", "/auth/csrf")
    .catch(() => null) // no session: the request goes without, and its 401 says why
    .finally(() => {
      restoring = null;
    });
  return restoring;
}

async function unsafe(method, path, body) {
  if (!csrfToken) await restoreCsrf();
  try {
    return await send(method, path, body, csrfToken);
  } catch (error) {
    if (error.code !== "csrf_failed") throw error;
    // Another tab signed in again and the cookie changed: fetch the token that matches it.
    csrfToken = null;
    await restoreCsrf();
    return send(method, path, body, csrfToken);
  }
}

function refresh() {
  refreshing ??= unsafe("POST", "/auth/refresh").finally(() => {
    refreshing = null;
  });
  return refreshing;
}

/** A request of a signed-in user: the CSRF header, and one refresh-and-retry on 401. */
async function call(method, path, body) {
  const once = () => (SAFE.has(method) ? send(method, path, body) : unsafe(method, path, body));
  try {
    return await once();
  } catch (error) {
    if (error.status !== 401 || !EXPIRED.has(error.code)) throw error;
    await refresh(); // throws the 401 itself when the session is over
    return once();
  }
}

/** A request that needs no session (sign-up, sign-in, the emailed links). */
const open = (method, path, body) => send(method, path, body);

// --- signing up and the emailed links ------------------------------------------------------
export const register = (email, password) => open("POST", "/auth/register", { email, password });
export const verifyEmail = (token) => open("POST", "/auth/verify-email", { token });
export const resendVerification = (email) => open("POST", "/auth/verify-email/resend", { email });
export const forgotPassword = (email) => open("POST", "/auth/password/forgot", { email });
export const resetPassword = (token, newPassword) =>
  open("POST", "/auth/password/reset", { token, new_password: newPassword });

// --- signing in: `{user, csrf_token}`, or `{mfa_required, mfa_token, methods}` ----------------
export const signIn = (email, password) => open("POST", "/auth/login", { email, password });
export const verifySecondStep = (mfaToken, code) =>
  open("POST", "/auth/mfa/verify", { mfa_token: mfaToken, code });

/** Without `mfaToken` a usernameless sign-in; with it, the second step after a password. */
export async function signInWithPasskey(mfaToken) {
  const body = mfaToken ? { mfa_token: mfaToken } : {};
  const options = await open("POST", "/auth/passkeys/login/options", body);
  const credential = await webauthn.get(options);
  return open("POST", "/auth/passkeys/login", { ...body, credential });
}

/** Ends this session. With an expired access token the refresh cookie still names it. */
export async function signOut() {
  try {
    if (!csrfToken) await restoreCsrf();
    if (!csrfToken) return; // the API knows no live session of these cookies: nothing to end
    await unsafe("POST", "/auth/logout");
  } catch (error) {
    if (error.status !== 401) throw error; // 401: already signed out
  } finally {
    csrfToken = null;
  }
}

export async function signOutEverywhere() {
  await call("POST", "/auth/logout-all");
  csrfToken = null;
}

// --- the account -----------------------------------------------------------------------------
export const me = () => call("GET", "/users/me");
export const sessions = () => call("GET", "/auth/sessions");
export const revokeSession = (id) => call("DELETE", `/auth/sessions/${encodeURIComponent(id)}`);
export const changePassword = (currentPassword, newPassword) =>
  call("POST", "/auth/password/change", {
    current_password: currentPassword,
    new_password: newPassword,
  });
/** `{password}` or `{code}`: for the routes that answer 403 `reauthentication_required`. */
export const reauthenticate = (proof) => call("POST", "/auth/reauthenticate", proof);

export const mfaStatus = () => call("GET", "/auth/mfa");
export const startTotp = () => call("POST", "/auth/mfa/totp/setup");
export const enableTotp = (code) => call("POST", "/auth/mfa/totp/enable", { code });
export const disableTotp = () => call("DELETE", "/auth/mfa/totp");
export const newRecoveryCodes = () => call("POST", "/auth/mfa/recovery-codes");

export async function addPasskey(name) {
  const options = await call("POST", "/auth/passkeys/register/options");
  const credential = await webauthn.create(options);
  return call("POST", "/auth/passkeys/register", { credential, name });
}
export const renamePasskey = (id, name) =>
  call("PATCH", `/auth/passkeys/${encodeURIComponent(id)}`, { name });
export const removePasskey = (id) => call("DELETE", `/auth/passkeys/${encodeURIComponent(id)}`);

export const passkeysSupported = webauthn.supported;
