import { Page } from '../ui';
import { useLocation } from '../app/router';

/** Areas whose API is not part of this server yet (cluster orders, applications). */
export default function NotInstalled() {
  const { path } = useLocation();
  const what = path.startsWith('/clusters') ? 'Cluster orders' : 'Applications and autoscaling';
  return (
    <Page title={what}>
      <p>
        <strong>{what}</strong> is not installed on this server: its API is not present, so there is nothing to show here yet.
      </p>
      <p className="muted">The page appears once the server offers the area (see the API documentation at /docs).</p>
    </Page>
  );
}
