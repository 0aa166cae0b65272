import type { Command, Option } from '@commander-js/extra-typings';
import type { ApiClient } from '../client.js';
import type { CliConfig } from '../config.js';
import type { OutputFormat } from '../output.js';
import type { CliIo } from '../main.js';

/**
 * What a command module gets from `buildProgram`: the streams, an API
 * client for the configured server and token, the output format of a read,
 * the shared `-o` option, and a document reader (`-` is stdin). Command
 * modules (`src/cli/commands/*.ts`) export `register<Area>Commands(program, ctx)`.
 */
export interface CliContext {
  io: CliIo;
  client(): ApiClient;
  cfg(): CliConfig;
  fmt(local?: string): OutputFormat;
  outputOption(): Option<'-o, --output <format>', undefined, undefined, 'table' | 'json' | 'yaml'>;
  readDoc(file: string): string;
}

export type CommandModule = (program: Command, ctx: CliContext) => void;
