/**
 * Injection token of the module's `ResolvedModuleOptions`.
 *
 * @internal
 */
export const RESOLVED_MODULE_OPTIONS = Symbol('RESOLVED_MODULE_OPTIONS');
