// Oracle: @huggingface/jinja renders a chat template for a batch of variable sets.
// Usage: node render.mjs REQUEST.json   where REQUEST is {"template": "...", "cases": [{...variables}]}
// Prints [{"text": "..."} | {"error": "..."}] on stdout, one entry per case.
import { readFileSync } from 'node:fs';
import { Template } from '@huggingface/jinja';

const request = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const results = request.cases.map((variables) => {
  try {
    return { text: new Template(request.template).render(variables) };
  } catch (e) {
    return { error: String(e && e.message ? e.message : e) };
  }
});
process.stdout.write(JSON.stringify(results));
