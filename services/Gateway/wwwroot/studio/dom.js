// Tiny DOM helpers: elements from data only (textContent, never innerHTML), number formats.

export function el(tag, attrs = {}, ...children) {
  const node = tag === 'svg' || tag === 'polyline' || tag === 'circle' || tag === 'line' || tag === 'text'
    ? document.createElementNS('http://www.w3.org/2000/svg', tag)
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (v !== false && v != null) node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c !== '' && c != null) node.append(c);
  return node;
}

export const pct = (x) => (x == null ? '–' : `${(100 * x).toFixed(1)} %`);
export const num = (x) => (x == null ? '–' : Number(x).toPrecision(4));

/** Makes a drop zone out of `zone`: drop, click or Enter/Space (opens `input`), and calls onFiles with File objects. */
export function dropZone(zone, input, onFiles) {
  const open = () => input.click();
  zone.addEventListener('click', (e) => { if (e.target !== input) open(); });
  zone.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); open(); } });
  input.addEventListener('change', () => { onFiles([...input.files]); input.value = ''; });
  zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', async (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    onFiles(await filesOf(e.dataTransfer));
  });
}

// Dropped folders are walked (webkitGetAsEntry); plain files pass through.
async function filesOf(transfer) {
  const entries = [...transfer.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
  if (!entries.length) return [...transfer.files];
  const files = [];
  const walk = async (entry) => {
    if (entry.isFile) files.push(await new Promise((ok, fail) => entry.file(ok, fail)));
    else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((ok, fail) => reader.readEntries(ok, fail));
        if (!batch.length) break;
        for (const child of batch) await walk(child);
      }
    }
  };
  for (const entry of entries) await walk(entry);
  return files;
}
