import { ConfigurationError } from '../../errors/index.js';

/**
 * The error every key provider with an `init()` throws when one of its methods is called
 * before `init()` finished: one class and one wording for all of them, so a host that uses a
 * provider on its own learns the same fix whichever provider it picked.
 *
 * @param providerName The provider's `name` (`aws-kms`, `vault-transit`, ...).
 * @param method The method that was called, without parentheses (`generateDataKey`).
 */
export function providerUsedBeforeInit(providerName: string, method: string): ConfigurationError {
  return new ConfigurationError(
    `${providerName} key provider: ${method}() was called before init(); the module awaits init() at startup, so when using the provider on its own, await provider.init() first`,
  );
}
