// Hardhat 2 configuration for the loopback test node of custody-evm's integration tests.
// The node only serves JSON-RPC; TestToken is compiled by .ci/evm-node.sh with solcjs, so
// Hardhat's own compiler (which downloads solc builds) is never used: `sources` points at
// an empty directory.
module.exports = {
  paths: {
    sources: "./hardhat-sources-unused",
    cache: "./build/hardhat-cache",
    artifacts: "./build/hardhat-artifacts",
  },
  networks: {
    hardhat: {
      chainId: 31337,
      // Hardhat's public test mnemonic ("test test ... junk"): 20 accounts with 10000 ETH.
      // Never hold anything of value on these keys.
      accounts: {
        mnemonic: "test test test test test test test test test test test junk",
        count: 20,
        accountsBalance: "10000000000000000000000",
      },
      mining: { auto: true },
    },
  },
};
