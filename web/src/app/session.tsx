import { createContext, useContext } from 'react';

export interface Me {
  user: { id: string; name: string; displayName: string | null };
  system: string[];
  projects: Record<string, string[]>;
}

export interface SessionValue {
  me: Me;
  project: string;
  setProject(p: string): void;
  /** The caller holds `perm` on the current project (or system-wide). */
  can(perm: string, scope?: 'project' | 'system'): boolean;
  signOut(): Promise<void>;
}

export const Session = createContext<SessionValue | null>(null);

export function useSession(): SessionValue {
  const s = useContext(Session);
  if (!s) throw new Error('useSession outside the signed-in shell');
  return s;
}
