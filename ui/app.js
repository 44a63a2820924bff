// The dashboard's entry point. Every text from the server is put into the page as text
// (textContent), never as HTML: traces, prompts and LLM replies come from any client.
const status = document.getElementById('status');

async function health() {
  try {
    const res = await fetch('/healthz', { credentials: 'same-origin' });
    status.textContent = res.ok ? 'api reachable' : `api answered ${res.status}`;
  } catch (e) {
    status.textContent = 'api unreachable';
  }
}

health();
