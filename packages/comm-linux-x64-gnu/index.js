// The directory holding this platform's prebuilt shared libraries (lib/*.so).
import { fileURLToPath } from 'node:url';

export const libDir = fileURLToPath(new URL('./lib/', import.meta.url));
