// Oracle: Hugging Face `tokenizers` (Rust core, napi binding) encodes and decodes a batch of inputs.
// Usage: node tokenize.mjs REQUEST.json   where REQUEST is
//   {"tokenizer": "path/tokenizer.json", "texts": ["..."], "decode": [[ids]...]}
// Prints {"ids": [[...]], "decoded": ["..."], "decoded_skip_special": ["..."]} on stdout.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { Tokenizer } = require('tokenizers');

const request = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const tokenizer = Tokenizer.fromFile(request.tokenizer);
const ids = [];
for (const text of request.texts ?? []) {
  const encoding = await tokenizer.encode(text, null, { addSpecialTokens: false });
  ids.push(Array.from(encoding.getIds()));
}
const decoded = [];
const decodedSkip = [];
for (const seq of request.decode ?? []) {
  decoded.push(await tokenizer.decode(seq, false));
  decodedSkip.push(await tokenizer.decode(seq, true));
}
process.stdout.write(JSON.stringify({ ids, decoded, decoded_skip_special: decodedSkip }));
