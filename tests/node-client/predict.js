#!/usr/bin/env node
// Calls Graft's Gateway.Predict from Node.js, with the contract loaded from protos/gateway.proto at run time.
//
//   node predict.js --address 127.0.0.1:5100 --image path/to/image.png [--head name]... [--top-k 3] [--token T]
//
// Prints the reply as one JSON object on stdout; on a gRPC error prints {"error": {code, details}} and exits 2.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

function parseArgs(argv) {
  const args = { heads: [], topK: 0, token: process.env.GRAFT_TOKEN || '', deadlineSeconds: 60 };
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i];
    const value = argv[i + 1];
    switch (name) {
      case '--address': args.address = value; i++; break;
      case '--image': args.image = value; i++; break;
      case '--head': args.heads.push(value); i++; break;
      case '--top-k': args.topK = Number.parseInt(value, 10); i++; break;
      case '--token': args.token = value; i++; break;
      case '--deadline-seconds': args.deadlineSeconds = Number.parseFloat(value); i++; break;
      case '--protos': args.protos = value; i++; break;
      default: throw new Error(`unknown argument ${name}`);
    }
  }
  if (!args.address || !args.image) {
    throw new Error('usage: node predict.js --address host:port --image file [--head name]... [--top-k n] [--token t]');
  }
  args.protos = args.protos || path.resolve(__dirname, '..', '..', 'protos');
  return args;
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const definition = protoLoader.loadSync(path.join(args.protos, 'gateway.proto'), {
    includeDirs: [args.protos],
    keepCase: false,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const graft = grpc.loadPackageDefinition(definition).graft.v1;
  const client = new graft.Gateway(args.address, grpc.credentials.createInsecure());

  const metadata = new grpc.Metadata();
  if (args.token) {
    metadata.add('authorization', `Bearer ${args.token}`);
  }
  const request = { image: fs.readFileSync(args.image), heads: args.heads, topK: args.topK };
  const deadline = new Date(Date.now() + args.deadlineSeconds * 1000);

  client.predict(request, metadata, { deadline }, (err, reply) => {
    client.close();
    if (err) {
      process.stdout.write(JSON.stringify({ error: { code: err.code, details: err.details } }) + '\n');
      process.exitCode = 2;
      return;
    }
    process.stdout.write(JSON.stringify(reply) + '\n');
  });
}

try {
  main();
} catch (e) {
  process.stderr.write(`${e.message}\n`);
  process.exitCode = 1;
}
