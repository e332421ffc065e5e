package android.content.res;

import java.io.IOException;
import java.io.InputStream;

/** Compile-time stand-in for Android's AssetManager: the two methods WordPieceBert.kt calls. */
public final class AssetManager {
    public InputStream open(String fileName) throws IOException {
        throw new UnsupportedOperationException("compile-time stand-in");
    }

    public AssetFileDescriptor openFd(String fileName) throws IOException {
        throw new UnsupportedOperationException("compile-time stand-in");
    }
}
