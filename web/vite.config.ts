import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

/** The console: built into web/dist, served by the Infraflow server at `/` (src/api/console.ts). */
export default defineConfig({
  root: import.meta.dirname,
  plugins: [react()],
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022', sourcemap: false, chunkSizeWarningLimit: 400 },
  server: { proxy: { '/api': process.env.INFRAFLOW_URL ?? 'http://127.0.0.1:8080' } },
});
