// What the kafkajs test scripts share: failing with a message, and reading `--name value`
// arguments.

export function fail(message) {
  console.error(`kafkajs: ${message}`);
  process.exit(1);
}

export function argument(name) {
  const at = process.argv.indexOf(`--${name}`);
  if (at < 0 || at + 1 >= process.argv.length) fail(`missing --${name}`);
  return process.argv[at + 1];
}
