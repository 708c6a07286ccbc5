// Drop, paste, choose or photograph an image and see every head's answer, with probability bars.
import { api } from './api.js';
import { el, pct, num, dropZone } from './dom.js';

let say = () => {};

export function initTry(sayFn) {
  say = sayFn;
  dropZone(document.getElementById('predict-drop'), document.getElementById('predict-file'), (files) => files[0] && predict(files[0]));
  document.addEventListener('paste', (e) => {
    const file = [...e.clipboardData.files].find((f) => f.type.startsWith('image/'));
    if (file) predict(file);
  });
  if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
    const button = document.getElementById('webcam');
    button.hidden = false;
    button.addEventListener('click', startCamera);
    document.getElementById('snap').addEventListener('click', snap);
  }
}

async function startCamera() {
  try {
    const video = document.getElementById('video');
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true });
    document.getElementById('camera').hidden = false;
  } catch {
    say('The camera could not be opened: allow it in the browser (it also needs https or localhost), or drop a picture instead.');
  }
}

function snap() {
  const video = document.getElementById('video');
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext('2d').drawImage(video, 0, 0);
  canvas.toBlob((blob) => blob && predict(new File([blob], 'camera.png', { type: 'image/png' })), 'image/png');
}

async function predict(file) {
  const out = document.getElementById('prediction');
  out.replaceChildren(el('img', { src: URL.createObjectURL(file), alt: `The picture being tried: ${file.name}`, class: 'tried' }), el('p', {}, 'Asking every head…'));
  try {
    const reply = await api.predict(file);
    const answers = reply.results.length
      ? reply.results.map(answer)
      : [el('p', { class: 'empty' }, 'No head is serving yet: train one above.')];
    out.replaceChildren(out.firstChild, ...answers);
    say('');
  } catch (e) {
    out.replaceChildren(out.firstChild);
    say(e.message);
  }
}

function answer(r) {
  if (r.kind === 'HEAD_KIND_REGRESSOR') {
    return el('div', { class: 'card answer', 'data-head': r.head }, el('h3', {}, `${r.head} v${r.version}`), el('p', { class: 'value' }, num(r.value)));
  }
  return el('div', { class: 'card answer', 'data-head': r.head },
    el('h3', {}, `${r.head} v${r.version}: `, el('strong', {}, r.top[0] ? r.top[0].label : '?')),
    el('ul', { class: 'bars' }, ...r.top.map((t) => el('li', {},
      el('span', { class: 'label' }, t.label),
      el('meter', { min: 0, max: 1, value: t.probability, 'aria-label': `${t.label} probability` }),
      el('span', { class: 'p' }, pct(t.probability))))));
}
