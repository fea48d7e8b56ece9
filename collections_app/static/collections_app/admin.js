// FastCMS admin: a query typed beside "Staff only" or "Everyone" switches the rule to the query,
// so what was typed is what is saved (the server refuses a choice that contradicts the text).
'use strict';
document.addEventListener('DOMContentLoaded', () => {
  for (const editor of document.querySelectorAll('.rule-editor')) {
    const mode = editor.querySelector('select');
    const query = editor.querySelector('input');
    const show = () => { editor.dataset.mode = mode.value; };
    query.addEventListener('input', () => {
      if (query.value.trim() && mode.value !== 'query') {
        mode.value = 'query';
        show();
      }
    });
    mode.addEventListener('change', () => {
      show();
      if (mode.value === 'query') query.focus();
    });
    show();
  }
});
