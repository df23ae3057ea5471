// chokidar, as webpack, vite and nodemon run it: every change under the folder.
const chokidar = require('chokidar');
chokidar.watch(process.argv[2], { ignoreInitial: true })
	.on('all', (ev, p) => console.log(`${ev} ${p}`))
	.on('ready', () => console.log('READY'));
