// Hugging Face tokenizers (Rust core, npm binding) encode speed on the text written by bench_tokenizer.
// Usage: RAYON_NUM_THREADS=1 node bench_tokenizers.mjs TOKENIZER_JSON TEXT_FILE [REPEAT]
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { Tokenizer } = require('tokenizers');
const [tokenizerPath, textPath, repeatArg] = process.argv.slice(2);
const text = readFileSync(textPath, 'utf8');
const bytes = Buffer.byteLength(text, 'utf8');
let t = performance.now();
const tokenizer = Tokenizer.fromFile(tokenizerPath);
console.log(`tokenizer load: ${((performance.now() - t) / 1000).toFixed(2)} s; document: ${(bytes / 1e6).toFixed(1)} MB`);
for (let r = 0; r < Number(repeatArg ?? 3); ++r) {
  t = performance.now();
  const encoding = await tokenizer.encode(text, null, { addSpecialTokens: false });
  const s = (performance.now() - t) / 1000;
  const n = encoding.getLength();
  console.log(`encode whole document, pass ${r + 1}: ${(bytes / 1e6 / s).toFixed(1)} MB/s (${n} tokens, ${(n / 1e6 / s).toFixed(1)} M tokens/s)`);
}
// Same chunks as bench_tokenizer: ~4 KB pieces cut after a newline.
const chunks = [];
for (let pos = 0; pos < text.length; ) {
  const cut = text.indexOf('\n', Math.min(text.length, pos + 4096));
  const end = cut < 0 ? text.length : cut + 1;
  chunks.push(text.slice(pos, end));
  pos = end;
}
for (let r = 0; r < Number(repeatArg ?? 3); ++r) {
  t = performance.now();
  let n = 0;
  for (const chunk of chunks) n += (await tokenizer.encode(chunk, null, { addSpecialTokens: false })).getLength();
  const s = (performance.now() - t) / 1000;
  console.log(`encode ${chunks.length} chunks one by one, pass ${r + 1}: ${(bytes / 1e6 / s).toFixed(1)} MB/s (${n} tokens)`);
}
for (let r = 0; r < Number(repeatArg ?? 3); ++r) {
  t = performance.now();
  const encodings = await tokenizer.encodeBatch(chunks, { addSpecialTokens: false });
  const s = (performance.now() - t) / 1000;
  const n = encodings.reduce((a, e) => a + e.getLength(), 0);
  console.log(`encodeBatch of the chunks, pass ${r + 1}: ${(bytes / 1e6 / s).toFixed(1)} MB/s (${n} tokens)`);
}
