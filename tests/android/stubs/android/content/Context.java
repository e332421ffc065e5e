package android.content;

import android.content.res.AssetManager;

/** Compile-time stand-in for Android's Context: only what WordPieceBert.kt calls, same signatures. */
public abstract class Context {
    public abstract AssetManager getAssets();
}
