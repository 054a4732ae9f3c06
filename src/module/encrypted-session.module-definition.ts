import { ConfigurableModuleBuilder } from '@nestjs/common';
import { getDataSourceToken } from '@nestjs/typeorm';
import type {
  EncryptedSessionModuleExtras,
  EncryptedSessionModuleOptions,
} from './encrypted-session-module-options.interface.js';

/** Injection token of the host DataSource named by `dataSourceName`, when one is. */
export const HOST_DATA_SOURCE = Symbol('HOST_DATA_SOURCE');

export const {
  ConfigurableModuleClass: ConfigurableEncryptedSessionModule,
  MODULE_OPTIONS_TOKEN: ENCRYPTED_SESSION_MODULE_OPTIONS,
  OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<EncryptedSessionModuleOptions>({ moduleName: 'EncryptedSession' })
  .setClassMethodName('forRoot')
  .setExtras<EncryptedSessionModuleExtras>({ isGlobal: false }, (definition, extras) => ({
    ...definition,
    global: extras.isGlobal,
    providers: [
      ...(definition.providers ?? []),
      ...(extras.dataSourceName === undefined
        ? []
        : [{ provide: HOST_DATA_SOURCE, useExisting: getDataSourceToken(extras.dataSourceName) }]),
    ],
  }))
  .build();
