export * from './fixtures.js';
export * from './require.js';
