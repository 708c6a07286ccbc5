#!/usr/bin/env node
// Runs a model exported by `graft heads export` with onnxruntime-node, outside Graft:
//
//   node run-model.js --model model.onnx --pixels image.rgb [--pixels other.rgb]... --size 224x224
//
// Each --pixels file holds raw RGB bytes (height x width x 3) of an image resized to the model's input size.
// Prints {"metadata": {...}, "outputs": [{"classIndex", "label", "probabilities"} | {"value"}]} as JSON.
'use strict';

const fs = require('node:fs');
const ort = require('onnxruntime-node');
const { Reader } = require('protobufjs/minimal');

/** The model's metadata_props (ModelProto field 14), read without decoding the graph. */
function readMetadata(bytes) {
  const reader = Reader.create(bytes);
  const metadata = {};
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag >>> 3 !== 14) { reader.skipType(tag & 7); continue; }
    const end = reader.uint32() + reader.pos;
    let key = '', value = '';
    while (reader.pos < end) {
      const t = reader.uint32();
      if (t >>> 3 === 1) key = reader.string(); else if (t >>> 3 === 2) value = reader.string(); else reader.skipType(t & 7);
    }
    metadata[key] = value;
  }
  return metadata;
}

async function main() {
  const args = { pixels: [] };
  for (let i = 2; i < process.argv.length; i += 2) {
    const [name, value] = [process.argv[i], process.argv[i + 1]];
    if (name === '--model') args.model = value;
    else if (name === '--pixels') args.pixels.push(value);
    else if (name === '--size') args.size = value;
    else throw new Error(`unknown argument ${name}`);
  }
  if (!args.model || args.pixels.length === 0 || !args.size) {
    throw new Error('usage: node run-model.js --model model.onnx --pixels image.rgb [--pixels ...] --size WxH');
  }
  const [width, height] = args.size.split('x').map(Number);
  const bytes = fs.readFileSync(args.model);
  const metadata = readMetadata(bytes);
  const labels = metadata.labels ? JSON.parse(metadata.labels) : [];
  const session = await ort.InferenceSession.create(bytes);
  const batch = Buffer.concat(args.pixels.map((p) => fs.readFileSync(p)));
  const feeds = { pixels: new ort.Tensor('uint8', new Uint8Array(batch), [args.pixels.length, height, width, 3]) };
  const results = await session.run(feeds);
  const outputs = args.pixels.map((_, n) => {
    if (results.value) return { value: results.value.data[n] };
    const k = labels.length;
    const probabilities = Array.from(results.probabilities.data.slice(n * k, (n + 1) * k));
    const classIndex = Number(results.class_index.data[n]);
    return { classIndex, label: labels[classIndex], probabilities };
  });
  process.stdout.write(JSON.stringify({ metadata, outputs }) + '\n');
}

main().catch((e) => {
  process.stderr.write(`${e.stack || e.message}\n`);
  process.exitCode = 1;
});
