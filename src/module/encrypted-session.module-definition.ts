import { ConfigurableModuleBuilder, type Provider } from '@nestjs/common';
import { getDataSourceToken } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { ConfigurationError } from '../errors/index.js';
import type {
  EncryptedSessionModuleExtras,
  EncryptedSessionModuleOptions,
} from './module-options.schema.js';

/**
 * Injection token of the host DataSource named by `dataSourceName`, or `null` when none is.
 * Always provided and injected as required: an optional injection would turn a host
 * DataSource that failed to connect into "no DataSource" (Nest injects `undefined` for an
 * optional dependency whose factory threw), and sessions would go to the module's own file.
 */
export const HOST_DATA_SOURCE = Symbol('HOST_DATA_SOURCE named by dataSourceName');

/** The host DataSource `dataSourceName` names, required to exist and be initialized. */
function hostDataSourceProvider(dataSourceName: string | undefined): Provider {
  if (dataSourceName === undefined) return { provide: HOST_DATA_SOURCE, useValue: null };
  return {
    provide: HOST_DATA_SOURCE,
    // Required: when the host's DataSource cannot be built, its own error stops startup.
    inject: [getDataSourceToken(dataSourceName)],
    useFactory: (dataSource: DataSource) => {
      if (!dataSource.isInitialized) {
        throw new ConfigurationError(
          `dataSourceName '${dataSourceName}' names a TypeORM DataSource that is not initialized (TypeOrmModule manualInitialization?); initialize it before the app starts or leave manualInitialization off`,
        );
      }
      return dataSource;
    },
  };
}

/** Extras the module reads beside the options (`forRoot`) or beside `useFactory` (`forRootAsync`). */
export const MODULE_EXTRAS_DEFAULTS: Required<Pick<EncryptedSessionModuleExtras, 'isGlobal'>> &
  Pick<EncryptedSessionModuleExtras, 'dataSourceName'> = {
  isGlobal: false,
  // Listed so that `forRoot` strips it from the options as it does `isGlobal`.
  dataSourceName: undefined,
};

export const {
  ConfigurableModuleClass: ConfigurableEncryptedSessionModule,
  MODULE_OPTIONS_TOKEN: ENCRYPTED_SESSION_MODULE_OPTIONS,
  OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<EncryptedSessionModuleOptions>({ moduleName: 'EncryptedSession' })
  .setClassMethodName('forRoot')
  .setExtras<EncryptedSessionModuleExtras>(MODULE_EXTRAS_DEFAULTS, (definition, extras) => ({
    ...definition,
    global: extras.isGlobal,
    providers: [...(definition.providers ?? []), hostDataSourceProvider(extras.dataSourceName)],
  }))
  .build();
