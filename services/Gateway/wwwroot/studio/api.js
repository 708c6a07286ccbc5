// The Gateway's HTTP API as the studio uses it, and failures turned into sentences a person can act on.

const TOKEN_KEY = 'graft.adminToken';

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY) || '',
  set: (value) => value ? sessionStorage.setItem(TOKEN_KEY, value) : sessionStorage.removeItem(TOKEN_KEY),
};

/** An API failure with the gateway's own message and a plain-words explanation. */
export class ApiError extends Error {
  constructor(status, message) {
    super(explain(status, message));
    this.status = status;
    this.detail = message;
  }
}

function explain(status, message) {
  const detail = message ? ` (${message})` : '';
  switch (status) {
    case 0: return 'The Gateway did not answer. Check that it is running (./graft up) and reload the page.';
    case 401: return `The Gateway wants the admin token: paste it into "Admin token" at the top (graft up writes it to data/admin-token)${detail}.`;
    case 403: return `The Gateway refused: ${message}`;
    case 413: return `Too much at once: ${message}`;
    case 429: return `Too much at once: ${message}`;
    case 503: return `A service behind the Gateway is not available right now; try again in a moment${detail}.`;
    case 504: return `The Gateway gave up waiting${detail}; try again.`;
    default: return message || `The Gateway answered HTTP ${status}.`;
  }
}

function headers(extra = {}) {
  const h = { ...extra };
  const t = token.get();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

async function failure(response) {
  let message = '';
  try {
    const body = await response.json();
    message = body.message || body.error || '';
  } catch { /* not JSON */ }
  return new ApiError(response.status, message);
}

async function call(method, path, body, contentType) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: headers(contentType ? { 'Content-Type': contentType } : {}),
      body,
    });
  } catch {
    throw new ApiError(0, '');
  }
  if (!response.ok) throw await failure(response);
  return response;
}

export const api = {
  describe: async () => (await call('GET', '/v1/describe')).json(),
  activate: async (name, version) => (await call('POST', `/v1/heads/${encodeURIComponent(name)}/versions/${version}:activate`)).json(),
  remove: async (name, version = 0) => (await call('DELETE', `/v1/heads/${encodeURIComponent(name)}${version ? `?version=${version}` : ''}`)).json(),
  predict: async (blob) => (await call('POST', '/v1/predict/upload?top_k=5', blob, blob.type || 'application/octet-stream')).json(),

  /** Downloads one version as an ONNX file (backbone + head); calls onProgress(bytes, total) as pieces arrive and
   *  resolves with { blob, fileName }. The token goes in a header, so this is a fetch, not a plain link. */
  async exportOnnx(name, version, onProgress) {
    const response = await call('GET', `/v1/heads/${encodeURIComponent(name)}/export?version=${version}&input=pixels`);
    const total = Number(response.headers.get('Content-Length')) || 0;
    const fileName = /filename="([^"]+)"/.exec(response.headers.get('Content-Disposition') || '')?.[1] || `${name}-v${version}.onnx`;
    const reader = response.body.getReader();
    const parts = [];
    let received = 0;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parts.push(value);
        received += value.length;
        onProgress(received, total);
      }
    } catch { /* the connection broke: the length check below says so */ }
    if (total && received !== total) throw new Error(`The download broke off after ${received} of ${total} bytes; try again.`);
    return { blob: new Blob(parts, { type: 'application/octet-stream' }), fileName };
  },

  /** Trains from a FormData upload; calls onProgress for every NDJSON line; resolves with the last (published) one. */
  async train(name, form, onProgress) {
    const response = await call('POST', `/v1/heads/${encodeURIComponent(name)}/train`, form);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    let last = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (value) buffer += value;
      let newline;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline).trim();
        buffer = buffer.slice(newline + 1);
        if (!line) continue;
        const item = JSON.parse(line);
        if (item.error) throw new ApiError(httpStatusOf(item.error.code), item.error.message);
        last = item;
        onProgress(item);
      }
      if (done) break;
    }
    if (!last || last.phase !== 'TRAIN_PHASE_PUBLISHED') {
      throw new ApiError(0, 'the training stream ended before a version was published');
    }
    return last;
  },
};

// gRPC code -> HTTP status, for errors that arrive inside the progress stream.
function httpStatusOf(code) {
  return { 3: 400, 5: 404, 7: 403, 8: 413, 9: 400, 10: 409, 14: 503, 16: 401, 4: 504 }[code] || 500;
}
