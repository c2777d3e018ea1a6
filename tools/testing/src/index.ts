export * from './fixtures.js';
export * from './require.js';
export * from './random.js';
export * from './geometry.js';
export * from './models.js';
export * from './cli.js';
export * from './stats.js';
