// @ts-check
/**
 * Stryker ignorer `messages`: leaves the wording of error messages and log lines unmutated.
 * Those texts change no outcome a caller or an attacker can see (the class, code and
 * `retryable` of an error do, and stay mutated); that no secret reaches them is tested with
 * canary strings instead. Everything around them (conditions, causes, which error is thrown,
 * whether a log call happens) is still mutated.
 *
 * Ignored: the first argument of `new <Name>Error(...)` and of the message builders below,
 * and every argument of `logger.<level>(...)`.
 */
const MESSAGE_BUILDERS = new Set(['notAnEnvelope', 'notSerializable']);
const LOG_LEVELS = new Set(['log', 'error', 'warn', 'debug', 'verbose', 'fatal']);

/** @param {any} path a Babel NodePath */
function shouldIgnore(path) {
  const parent = path.parentPath;
  if (!parent || path.listKey !== 'arguments') return undefined;
  const callee = parent.node.callee;
  if (parent.isNewExpression() && path.key === 0 && callee?.type === 'Identifier') {
    if (/Error$/.test(callee.name)) return 'Error message wording';
  }
  if (parent.isCallExpression()) {
    if (path.key === 0 && callee?.type === 'Identifier' && MESSAGE_BUILDERS.has(callee.name)) {
      return 'Error message wording';
    }
    if (
      callee?.type === 'MemberExpression' &&
      callee.object.type === 'Identifier' &&
      callee.object.name === 'logger' &&
      callee.property.type === 'Identifier' &&
      LOG_LEVELS.has(callee.property.name)
    ) {
      return 'Log line wording';
    }
  }
  return undefined;
}

// What `declareValuePlugin(PluginKind.Ignore, ...)` of @stryker-mutator/api returns, written out
// so this file needs no import from Stryker's internals.
export const strykerPlugins = [{ kind: 'Ignore', name: 'messages', value: { shouldIgnore } }];
