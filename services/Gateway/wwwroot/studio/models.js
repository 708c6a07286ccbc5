// The backbone and every head with its versions, metrics and staleness; activate or delete a version.
import { api } from './api.js';
import { el, pct, num } from './dom.js';

let say = () => {};

export function initModels(sayFn) {
  say = sayFn;
  document.getElementById('refresh').addEventListener('click', refreshModels);
}

export async function refreshModels() {
  const backboneBox = document.getElementById('backbone');
  const headsBox = document.getElementById('heads');
  try {
    const d = await api.describe();
    const b = d.backbone;
    backboneBox.replaceChildren(
      el('h3', {}, `Backbone: ${b.name}`),
      el('p', {}, `${b.featureDimension} features from ${b.inputShape.join('×')} images, on ${b.executionProvider.replace('ExecutionProvider', '')}. `,
        el('span', { class: 'hint' }, `Fingerprint ${b.fingerprint}`)));
    headsBox.replaceChildren(...(d.heads.length ? d.heads.map(headCard) : [el('p', { class: 'empty' }, 'No heads yet: train one below.')]));
  } catch (e) {
    backboneBox.textContent = 'Not loaded.';
    say(e.message);
  }
}

function headCard(h) {
  const active = h.versions.find((v) => v.version === h.activeVersion);
  const kind = (active || h.versions[h.versions.length - 1] || {}).kind === 'HEAD_KIND_CLASSIFIER' ? 'classifier' : 'regressor';
  const rows = h.versions.slice().reverse().map((v) => versionRow(h, v));
  return el('article', { class: 'card head', 'data-head': h.name },
    el('h3', {}, h.name, ' ', el('span', { class: 'tag' }, kind),
      h.stale ? el('span', { class: 'tag warn', title: 'Trained on another backbone: retrain it to use it again' }, 'stale') : '',
      h.activeVersion ? el('span', { class: 'tag ok' }, `serving v${h.activeVersion}`) : el('span', { class: 'tag warn' }, 'not serving')),
    active && active.labels.length ? el('p', { class: 'hint' }, `Classes: ${active.labels.join(', ')}`) : '',
    el('div', { class: 'scroll' }, el('table', {},
      el('thead', {}, el('tr', {}, ...['Version', 'Trained', 'Validation', 'Baseline', ''].map((t) => el('th', { scope: 'col' }, t)))),
      el('tbody', {}, ...rows))),
    el('button', { type: 'button', class: 'danger', onclick: () => removeHead(h.name) }, `Delete head ${h.name}`));
}

function versionRow(h, v) {
  const m = v.metrics || {};
  const classifier = v.kind === 'HEAD_KIND_CLASSIFIER';
  const serving = v.version === h.activeVersion;
  const quality = classifier ? `accuracy ${pct(m.accuracy)}` : `MAE ${num(m.mae)}`;
  const baseline = classifier ? `accuracy ${pct(m.baselineAccuracy)}` : `MAE ${num(m.baselineMae)}`;
  const download = el('button', { type: 'button', class: 'download', title: 'One ONNX file with the backbone and this version: runs in ONNX Runtime anywhere (see the README, Export)' },
    `Download ONNX v${v.version}`);
  download.addEventListener('click', () => downloadOnnx(download, h.name, v.version));
  const actions = serving
    ? el('span', {}, el('span', { class: 'tag ok' }, 'active'), ' ', download)
    : el('span', {},
      el('button', { type: 'button', onclick: () => activate(h.name, v.version) }, `Activate v${v.version}`),
      ' ',
      el('button', { type: 'button', class: 'danger', onclick: () => removeVersion(h.name, v.version) }, `Delete v${v.version}`),
      ' ',
      download);
  return el('tr', { 'data-version': v.version },
    el('th', { scope: 'row' }, `v${v.version}`),
    el('td', {}, v.created ? new Date(v.created).toLocaleString() : ''),
    el('td', {}, v.loadError ? el('span', { class: 'warn' }, v.loadError) : quality),
    el('td', {}, baseline),
    el('td', {}, actions));
}

const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;

/** Fetches the file (the token travels in a header) and hands it to the browser as a download through an object URL;
 *  the button shows the progress meanwhile. */
async function downloadOnnx(button, name, version) {
  const label = button.textContent;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  button.textContent = 'Preparing…';
  try {
    const { blob, fileName } = await api.exportOnnx(name, version, (received, total) => {
      button.textContent = total ? `Downloading… ${Math.floor((100 * received) / total)} %` : `Downloading… ${mb(received)}`;
    });
    const url = URL.createObjectURL(blob);
    const link = el('a', { href: url, download: fileName, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    // The browser reads the URL after click() returns; revoke it once it surely has.
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
    say(`Downloaded ${fileName} (${mb(blob.size)}): ${name} v${version} with its backbone, one ONNX file.`, 'ok');
  } catch (e) {
    say(`Could not download ${name} v${version}: ${e.message}`);
  } finally {
    button.textContent = label;
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}

async function activate(name, version) {
  try {
    await api.activate(name, version);
    say(`${name} now serves version ${version}.`, 'ok');
  } catch (e) { say(e.message); }
  refreshModels();
}

async function removeVersion(name, version) {
  if (!confirm(`Delete version ${version} of ${name}? This cannot be undone.`)) return;
  try {
    await api.remove(name, version);
    say(`Version ${version} of ${name} deleted.`, 'ok');
  } catch (e) { say(e.message); }
  refreshModels();
}

async function removeHead(name) {
  if (!confirm(`Delete the head ${name} with all its versions? This cannot be undone.`)) return;
  try {
    await api.remove(name);
    say(`${name} deleted.`, 'ok');
  } catch (e) { say(e.message); }
  refreshModels();
}
