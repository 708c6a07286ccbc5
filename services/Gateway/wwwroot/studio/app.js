// Studio entry point: the token box, the notice area, and the three parts of the page.
import { token } from './api.js';
import { initModels, refreshModels } from './models.js';
import { initTrain } from './train.js';
import { initTry } from './try.js';

const notice = document.getElementById('notice');

/** Shows an error (or, with kind 'ok', a confirmation) in words; it stays until the next action. */
export function say(message, kind = 'error') {
  notice.textContent = message;
  notice.className = `notice ${kind}`;
  notice.hidden = !message;
}

const tokenInput = document.getElementById('token');
tokenInput.value = token.get();
document.getElementById('token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  token.set(tokenInput.value.trim());
  say(tokenInput.value.trim() ? 'Token saved for this browser tab.' : 'Token cleared.', 'ok');
  refreshModels();
});

initModels(say);
initTrain(say, refreshModels);
initTry(say);
refreshModels();
