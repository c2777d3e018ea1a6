/** `bagua-launch` for the benchmark: the comm package's CLI entry (launchMain), run as a child process. */
import { launchMain } from '@bagua/comm';

const code = await launchMain(process.argv.slice(2));
// Exit explicitly, as bin/bagua-launch.js does: a leftover handle must not keep the launcher alive.
process.exit(code);
