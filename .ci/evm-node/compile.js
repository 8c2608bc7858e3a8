// Compiles contracts/TestToken.sol with solcjs (the npm `solc` package: the compiler as
// bundled wasm, nothing downloaded at run time) into build/TestToken.bin (creation
// bytecode, hex without 0x) and build/TestToken.abi.json. Exits non-zero on any compiler
// error. Used by ../evm-node.sh.
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const source = path.join(__dirname, "contracts", "TestToken.sol");
const outDir = path.join(__dirname, "build");
const input = {
  language: "Solidity",
  sources: { "TestToken.sol": { content: fs.readFileSync(source, "utf8") } },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    // Hardhat 2.29 runs Prague; Cancun code runs there and on every current chain.
    evmVersion: "cancun",
    outputSelection: { "*": { TestToken: ["abi", "evm.bytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
let failed = false;
for (const message of output.errors || []) {
  process.stderr.write(message.formattedMessage || message.message);
  if (message.severity === "error") failed = true;
}
const contract = output.contracts && output.contracts["TestToken.sol"] && output.contracts["TestToken.sol"].TestToken;
const bytecode = contract && contract.evm && contract.evm.bytecode && contract.evm.bytecode.object;
if (failed || !bytecode || !/^[0-9a-f]+$/.test(bytecode)) {
  process.stderr.write(`solc ${solc.version()} failed to compile ${source}\n`);
  process.exit(1);
}
fs.mkdirSync(outDir, { recursive: true });
fs.writeFileSync(path.join(outDir, "TestToken.bin"), bytecode + "\n");
fs.writeFileSync(path.join(outDir, "TestToken.abi.json"), JSON.stringify(contract.abi, null, 2) + "\n");
process.stderr.write(`compiled TestToken with solc ${solc.version()}: ${bytecode.length / 2} bytes\n`);
