// Node's own fs.watch on each folder (inotify; Node 20's recursive mode polls files on
// Linux), as nodemon's and many dev servers' own watchers do.
const fs = require('fs');
const path = require('path');
const root = process.argv[2];
const watch = (dir) => {
	fs.watch(dir, (ev, name) => console.log(`${ev} ${path.relative(root, path.join(dir, name))}`));
	for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
		if (e.isDirectory()) watch(path.join(dir, e.name));
	}
};
watch(root);
console.log('READY');
