// Create a classifier (classes with dropped pictures) or a regressor (pictures with numbers), train it with live
// progress and a loss curve, then show validation metrics next to the trivial baseline (and a confusion matrix).
import { api } from './api.js';
import { el, pct, num, dropZone } from './dom.js';

let say = () => {};
let classCount = 0;
const regressorItems = []; // { file, input }

export function initTrain(sayFn, onTrained) {
  say = sayFn;
  const form = document.getElementById('train-form');
  document.getElementById('add-class').addEventListener('click', () => addClass());
  addClass();
  addClass();
  for (const radio of form.elements.kind) radio.addEventListener('change', showKind);
  dropZone(document.getElementById('regressor-drop'), document.getElementById('regressor-files'), addRegressorFiles);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    await train(form);
    onTrained();
  });
}

const kindOf = (form) => form.elements.kind.value;

function showKind() {
  const classifier = kindOf(document.getElementById('train-form')) === 'classifier';
  document.getElementById('classifier-data').hidden = !classifier;
  document.getElementById('regressor-data').hidden = classifier;
}

function addClass() {
  const n = ++classCount;
  const files = [];
  const count = el('span', { class: 'count' }, 'no pictures yet');
  const thumbs = el('div', { class: 'thumbs' });
  const input = el('input', { type: 'file', accept: 'image/*', multiple: true, hidden: true, id: `class-files-${n}` });
  const zone = el('div', { class: 'drop', tabindex: '0', role: 'button', 'aria-label': `Add pictures for class ${n}: drop them or a folder here, or press Enter to choose files` },
    'Drop pictures or a folder, or ', el('span', { class: 'link' }, 'choose files'), input);
  const name = el('input', { id: `class-name-${n}`, class: 'class-name', required: true, placeholder: `class ${n}, e.g. sandal` });
  const card = el('div', { class: 'card class' },
    el('label', { for: `class-name-${n}` }, `Class ${n} name`), name, zone, count, thumbs,
    el('button', { type: 'button', class: 'link-button', onclick: () => { card.remove(); } }, `Remove class ${n}`));
  card.files = files;
  dropZone(zone, input, (added) => {
    const images = added.filter((f) => f.type.startsWith('image/'));
    files.push(...images);
    count.textContent = `${files.length} picture${files.length === 1 ? '' : 's'}`;
    for (const f of images.slice(0, 8 - thumbs.children.length)) thumbs.append(el('img', { src: URL.createObjectURL(f), alt: f.name }));
    if (added.length > images.length) say(`${added.length - images.length} file(s) were not pictures and were left out.`);
  });
  document.getElementById('classes').append(card);
}

async function addRegressorFiles(files) {
  const list = document.getElementById('regressor-list');
  const csv = files.filter((f) => f.name.toLowerCase().endsWith('.csv'));
  for (const f of files.filter((x) => x.type.startsWith('image/'))) {
    const n = regressorItems.length + 1;
    const input = el('input', { type: 'number', step: 'any', required: true, id: `value-${n}`, 'aria-label': `Number for ${f.name}` });
    regressorItems.push({ file: f, input });
    list.append(el('li', {}, el('img', { src: URL.createObjectURL(f), alt: '' }), el('label', { for: `value-${n}` }, f.name), input));
  }
  for (const f of csv) {
    // Lines "path,number": matched on the file name, so "ankle-boot/test-00000.png,29.5" fills test-00000.png.
    const byName = new Map((await f.text()).split(/\r?\n/).map((line) => line.split(','))
      .filter((p) => p.length >= 2 && p[1].trim() !== '' && !Number.isNaN(Number(p[p.length - 1])))
      .map((p) => [p[0].trim().split('/').pop(), p[p.length - 1].trim()]));
    let filled = 0;
    for (const item of regressorItems) if (byName.has(item.file.name)) { item.input.value = byName.get(item.file.name); filled++; }
    say(`${f.name}: filled in ${filled} of ${regressorItems.length} numbers.`, 'ok');
  }
}

/** The upload: file fields named class:<label> or value:<number>, plus the spec as JSON. */
function buildUpload(form) {
  const data = new FormData();
  const epochs = Number(form.elements.epochs.value || 30);
  const depth = form.elements.depth?.value || 'HEAD_DEPTH_MLP';
  const augment = Number(form.elements.augment?.value || 0);
  data.append('spec', JSON.stringify(augment > 0 ? { epochs, depth, augment } : { epochs, depth }));
  if (kindOf(form) === 'classifier') {
    data.append('kind', 'classifier');
    const cards = [...document.querySelectorAll('#classes .class')];
    const named = cards.filter((c) => c.files.length || c.querySelector('.class-name').value.trim());
    if (named.length < 2) throw new Error('A classifier needs at least two classes, each with a name and some pictures.');
    for (const card of named) {
      const label = card.querySelector('.class-name').value.trim();
      if (!label) throw new Error('Every class with pictures needs a name.');
      if (!card.files.length) throw new Error(`Class "${label}" has no pictures: drop some on it, or remove the class.`);
      for (const f of card.files) data.append(`class:${label}`, f, f.name);
    }
  } else {
    data.append('kind', 'regressor');
    if (regressorItems.length < 2) throw new Error('A regressor needs at least two pictures, each with its number.');
    for (const { file, input } of regressorItems) {
      if (input.value.trim() === '' || Number.isNaN(Number(input.value))) throw new Error(`"${file.name}" has no number yet.`);
      data.append(`value:${Number(input.value)}`, file, file.name);
    }
  }
  return data;
}

async function train(form) {
  const name = form.elements.name.value.trim();
  if (!/^[a-z0-9][a-z0-9._-]{0,62}$/.test(name)) {
    say('Give the head a name: lower-case letters, digits, dot, dash or underscore (e.g. shoes).');
    form.elements.name.focus();
    return;
  }
  let upload;
  try { upload = buildUpload(form); } catch (e) { say(e.message); return; }

  const box = document.getElementById('progress');
  const text = document.getElementById('progress-text');
  const bar = document.getElementById('progress-bar');
  const result = document.getElementById('result');
  const button = document.getElementById('train-button');
  const epochs = [];
  box.hidden = false;
  result.replaceChildren();
  drawChart(epochs);
  text.textContent = 'Uploading the pictures…';
  bar.removeAttribute('value');
  button.disabled = true;
  say('');
  let decision = ''; // the Gateway's depth decision (depth auto) or augmentation cost, shown with the progress
  try {
    const last = await api.train(name, upload, (p) => {
      if (p.phase === 'TRAIN_PHASE_QUEUED') text.textContent = `Waiting for a training slot (${p.queuePosition} ahead)…`;
      if (p.message) decision = ` (${p.message})`;
      if (p.phase === 'TRAIN_PHASE_EXTRACTING') {
        text.textContent = `Reading the pictures: ${p.imagesDone} of ${p.imagesTotal}${decision}`;
        bar.max = p.imagesTotal || 1; bar.value = p.imagesDone;
      }
      if (p.phase === 'TRAIN_PHASE_TRAINING') {
        epochs.push(p);
        text.textContent = `Training: epoch ${p.epoch} of ${p.epochsTotal}, loss ${num(p.trainLoss)}, ${p.validationMetricName} ${num(p.validationMetric)}`;
        bar.max = p.epochsTotal || 1; bar.value = p.epoch;
        drawChart(epochs);
      }
    });
    const v = last.published;
    text.textContent = `Published ${v.name} version ${v.version} in ${last.elapsedSeconds.toFixed(1)} s.`;
    bar.max = 1; bar.value = 1;
    result.replaceChildren(...metricsView(v));
    say(`${v.name} v${v.version} is trained and serving. Try it below.`, 'ok');
  } catch (e) {
    text.textContent = 'Training did not finish.';
    bar.max = 1; bar.value = 0;
    say(e.message);
  } finally {
    button.disabled = false;
  }
}

function drawChart(epochs) {
  const svg = document.getElementById('loss-chart');
  svg.replaceChildren();
  if (!epochs.length) return;
  const W = 300, H = 120, L = 40, R = 6, T = 8, B = 16;
  const losses = epochs.map((e) => e.trainLoss);
  const metrics = epochs.map((e) => e.validationMetric);
  const scale = (values) => {
    const lo = Math.min(...values), hi = Math.max(...values);
    return (v) => (hi === lo ? (T + H - B) / 2 : H - B - ((v - lo) / (hi - lo)) * (H - B - T));
  };
  const x = (i) => L + (epochs.length === 1 ? 0 : (i / (epochs.length - 1)) * (W - L - R));
  const y = scale(losses);
  const ym = scale(metrics);
  svg.append(
    el('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }),
    el('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }),
    el('text', { x: L - 3, y: T + 6, 'text-anchor': 'end' }, Math.max(...losses).toPrecision(2)),
    el('text', { x: L - 3, y: H - B, 'text-anchor': 'end' }, Math.min(...losses).toPrecision(2)),
    el('text', { x: W - R, y: H - 3, 'text-anchor': 'end' }, `epoch ${epochs.length}`),
    el('text', { x: L, y: H - 3 }, 'epoch 1'),
    el('polyline', { class: 'loss', points: losses.map((l, i) => `${x(i)},${y(l)}`).join(' ') }));
  metrics.forEach((m, i) => svg.append(el('circle', { class: 'metric', cx: x(i), cy: ym(m), r: 2 })));
}

function metricsView(v) {
  const m = v.metrics || {};
  if (v.kind === 'HEAD_KIND_CLASSIFIER') {
    const k = v.labels.length;
    const matrix = el('table', { class: 'confusion' },
      el('caption', {}, 'Confusion matrix on the validation pictures (rows: true class, columns: predicted)'),
      el('thead', {}, el('tr', {}, el('th', {}, ''), ...v.labels.map((l) => el('th', { scope: 'col' }, l)))),
      el('tbody', {}, ...v.labels.map((label, r) => el('tr', {}, el('th', { scope: 'row' }, label),
        ...v.labels.map((_, c) => {
          const n = m.confusionMatrix[r * k + c] || 0;
          return el('td', { class: r === c ? 'diag' : n ? 'off' : '' }, String(n));
        })))));
    return [
      el('p', { class: 'verdict' }, `Validation accuracy ${pct(m.accuracy)}; always guessing the most common class would get ${pct(m.baselineAccuracy)}.`),
      el('p', { class: 'hint' }, `${m.trainRows} pictures trained, ${m.validationRows} held out, ${m.epochsRun} epochs.`),
      el('div', { class: 'scroll' }, matrix),
    ];
  }
  return [
    el('p', { class: 'verdict' }, `Validation mean absolute error ${num(m.mae)}; always guessing the average would be off by ${num(m.baselineMae)}.`),
    el('p', { class: 'hint' }, `RMSE ${num(m.rmse)}, R² ${num(m.r2)}; ${m.trainRows} pictures trained, ${m.validationRows} held out, ${m.epochsRun} epochs.`),
  ];
}
